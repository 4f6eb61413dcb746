"""Paired timing of two builds' pooling and batch-norm kernels in ONE process (the idea of
ab_two_builds.py: each build's _C loaded under its own name, calls alternating A, B, B, A...,
1 thread, thread CPU time), called with the arguments bench_sweep.py's families pass.

  python benchmarks/ab_pool_bn.py A.so B.so PASS "N,HW,C;N,HW,C" REPS
  PASS: mpf / mpb (max_pool 2x2 with argmax, forward / backward from argmax),
        apf / apb (avg_pool 2x2 forward / backward), bnf / bnb (batch_norm train fwd / bwd),
        brf / brb (bias + relu forward / backward with db), smf / smb (softmax over C at every
        pixel, forward / backward: rows N*HW*HW)
Prints per case the medians of REPS calls of each build, B / A, and both builds' roofline efficiency
as bench_sweep computes it (np.copyto of the compulsory bytes, timed in the same process, over the median).
"""
import statistics
import sys
import time

import numpy as np

from ab_two_builds import alternate, load
from fastconv.functional.pool import _pool_args


def copy_time(nbytes, reps):
    src = np.ones(nbytes // 8, np.float32)
    dst = np.empty_like(src)
    ts = []
    for _ in range(reps):
        t = time.thread_time()
        np.copyto(dst, src)
        ts.append(time.thread_time() - t)
    return statistics.median(ts)


def main():
    a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
    a.set_num_threads(1), b.set_num_threads(1)  # the sweep's 1 thread (thread_time sees one)
    what, reps = sys.argv[3], int(sys.argv[5])
    for case in sys.argv[4].split(";"):
        n, hw, c = (int(v) for v in case.split(","))
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
        args = _pool_args(x.shape, 2, None, "valid")
        y, am = a.max_pool2d_forward_with_argmax(x, *args)
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        g, bt = rng.standard_normal(c, dtype=np.float32), rng.standard_normal(c, dtype=np.float32)
        _, mean, _, inv_std = a.batch_norm_forward_train(x, g, bt, 1e-3)
        dyb = rng.standard_normal(x.shape, dtype=np.float32)
        yr = a.bias_act_forward(x, bt, "relu")
        x2, dy2 = x.reshape(-1, c), dyb.reshape(-1, c)
        ys = a.softmax_forward(x2)
        calls = {
            "mpf": (lambda k: k.max_pool2d_forward_with_argmax(x, *args), x.nbytes + 5 * y.size),
            "mpb": (lambda k: k.max_pool2d_backward_argmax(dy, am, x.shape, *args), x.nbytes + 5 * y.size),
            "apf": (lambda k: k.avg_pool2d_forward(x, *args), x.nbytes + 4 * y.size),
            "apb": (lambda k: k.avg_pool2d_backward(dy, x.shape, *args), x.nbytes + 4 * y.size),
            "bnf": (lambda k: k.batch_norm_forward_train(x, g, bt, 1e-3), 2 * x.nbytes),
            "bnb": (lambda k: k.batch_norm_backward(dyb, x, g, mean, inv_std), 3 * x.nbytes),
            "brf": (lambda k: k.bias_act_forward(x, bt, "relu"), 2 * x.nbytes),
            "brb": (lambda k: k.bias_act_backward(dyb, yr, "relu", True), 3 * x.nbytes),
            "smf": (lambda k: k.softmax_forward(x2), 2 * x.nbytes),
            "smb": (lambda k: k.softmax_backward(dy2, ys), 3 * x.nbytes),
        }
        f, traffic = calls[what]
        f(a), f(b)
        ta, tb = alternate(f, a, b, reps)
        ma, mb = statistics.median(ta), statistics.median(tb)
        cp = copy_time(traffic, max(5, reps // 2))
        print(f"N={n} {hw}x{hw} C={c} {what}: A {ma * 1e3:.3f} B {mb * 1e3:.3f} ms ratio {mb / ma:.3f}"
              f"  roofline A {cp / ma:.3f} B {cp / mb:.3f}  (min A {min(ta) * 1e3:.3f} B {min(tb) * 1e3:.3f})",
              flush=True)


if __name__ == "__main__":
    main()
