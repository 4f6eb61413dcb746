"""Paired timing of two builds' 1x1 convs and dense layers with few channels in ONE process (the
idea of ab_two_builds.py: each build's _C loaded under its own name, calls alternating A, B, B, A...,
1 thread, thread CPU time), called with the arguments bench_sweep.py's families pass.

  python benchmarks/ab_narrow.py A.so B.so PASS "N,HW,C;N,HW,C" REPS
  PASS: c1f / c1d / c1w (1x1 stride 1 'same' conv forward + bias, backward data, backward filter
        with db), c2f / c2d / c2w (the same at stride 2),
        df / db (dense forward + bias / backward on the sweep's (N*HW, C) x (C, C) product)
Prints per case the medians of REPS calls of each build, B / A, and both builds' roofline efficiency
as bench_sweep computes it for a narrow case (np.copyto of the compulsory bytes over the median).
"""
import statistics
import sys
import time

import numpy as np

from ab_two_builds import alternate, load
from ab_pool_bn import copy_time


def main():
    a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
    a.set_num_threads(1), b.set_num_threads(1)
    what, reps = sys.argv[3], int(sys.argv[5])
    for case in sys.argv[4].split(";"):
        n, hw, c = (int(v) for v in case.split(","))
        rng = np.random.default_rng(0)
        one, zero = (1, 1), (0, 0, 0, 0)
        if what[0] == "c":
            s = int(what[1])
            oh = -(-hw // s)
            x = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
            w = rng.standard_normal((1, 1, c, c), dtype=np.float32)
            bias = rng.standard_normal(c, dtype=np.float32)
            dy = rng.standard_normal((n, oh, oh, c), dtype=np.float32)
            st = (s, s)
            traffic = x.nbytes + w.nbytes + dy.nbytes
            call = {
                "f": lambda k: k.conv2d_forward(x, w, bias, st, zero, one, 1),
                "d": lambda k: k.conv2d_backward_data(dy, w, x.shape, st, zero, one, 1),
                "w": lambda k: k.conv2d_backward_weights(dy, x, w.shape, st, zero, one, 1, True),
            }[what[2]]
        else:
            x = rng.standard_normal((n * hw, c), dtype=np.float32)
            w = rng.standard_normal((c, c), dtype=np.float32)
            bias = rng.standard_normal(c, dtype=np.float32)
            dy = rng.standard_normal((n * hw, c), dtype=np.float32)
            if what == "df":
                traffic = 2 * x.nbytes + w.nbytes
                call = lambda k: k.dense_forward(x, w, bias)
            else:
                traffic = 3 * x.nbytes + 2 * w.nbytes
                call = lambda k: k.dense_backward(dy, x, w)
        ra, rb = call(a), call(b)
        ra = ra if isinstance(ra, tuple) else (ra,)
        rb = rb if isinstance(rb, tuple) else (rb,)
        err = max(float(np.max(np.abs(np.asarray(p) - np.asarray(q)))) / (1e-30 + float(np.max(np.abs(np.asarray(p)))))
                  for p, q in zip(ra, rb) if p is not None)
        for _ in range(2):
            call(a), call(b)
        ta, tb = alternate(call, a, b, reps)
        ma, mb = statistics.median(ta), statistics.median(tb)
        ct = copy_time(traffic, 15)
        print(f"{what} {case:14s} A {ma*1e3:7.3f} ms  B {mb*1e3:7.3f} ms  B/A {mb/ma:5.3f}  "
              f"min {min(ta)*1e3:7.3f} {min(tb)*1e3:7.3f}  roofline {ct/ma:.2f} -> {ct/mb:.2f}  maxrel {err:.1e}")


if __name__ == "__main__":
    main()
