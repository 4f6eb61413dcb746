"""Paired timing of two builds of fastconv._C on 3x3 stride-1 'same' convs with C channels in
and out (the sweep's "conv 3x3 s1 fwd / bwd-data / bwd-filter" families at few channels), the
_C calls fastconv.functional makes, 1 native thread, thread CPU time, calls alternating
(ab_two_builds.alternate).

  python benchmarks/ab_few_channel.py A.so B.so PASS "N,HW,C;N,HW,C" REPS
  PASS: fwd (conv2d_forward with bias), bwd (conv2d_backward_data),
        ww (conv2d_backward_weights with the bias gradient)
Prints per case the medians of REPS calls of each build, B / A, the minima, and the largest
difference between the two builds' outputs relative to A's largest magnitude.
"""
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_two_builds import alternate, load  # noqa: E402


def main():
    a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
    what, reps = sys.argv[3], int(sys.argv[5])
    for m in (a, b):
        m.set_num_threads(1)
    for case in sys.argv[4].split(";"):
        n, hw, c = (int(v) for v in case.split(","))
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
        dy = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
        w = rng.standard_normal((3, 3, c, c), dtype=np.float32)
        bias = rng.standard_normal(c, dtype=np.float32)
        one, pads = (1, 1), (1, 1, 1, 1)
        call = {
            "fwd": lambda k: k.conv2d_forward(x, w, bias, one, pads, one, 1),
            "bwd": lambda k: k.conv2d_backward_data(dy, w, x.shape, one, pads, one, 1),
            "ww": lambda k: k.conv2d_backward_weights(dy, x, w.shape, one, pads, one, 1, True),
        }[what]
        ra, rb = call(a), call(b)
        ra = ra if isinstance(ra, tuple) else (ra,)
        rb = rb if isinstance(rb, tuple) else (rb,)
        err = max(float(np.max(np.abs(p - q)) / (np.max(np.abs(p)) + 1e-30))
                  for p, q in zip(ra, rb) if p is not None)
        ta, tb = alternate(call, a, b, reps)
        ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
        print(f"{what} N={n} {hw}x{hw} C={c}: A {ma:.3f} ms  B {mb:.3f} ms  B/A {mb / ma:.3f}  "
              f"(min {min(ta) * 1e3:.3f} / {min(tb) * 1e3:.3f})  diff {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
