"""Paired timing of two builds' few-channel 3x3 conv passes in ONE process (calls alternating
A, B, B, A..., thread CPU time; the idea and the loader of ab_two_builds.py), 1 thread.

  OMP_NUM_THREADS=1 python benchmarks/ab_s2c.py A.so B.so "pass:N:HW:C[:S],..." [REPS] [ROUNDS]
pass: fwd (with bias, as the sweep), bwd-data, bwd-filter (with db); S the stride (2 unless
given), 'same' padding. Copy each build's fastconv/_C*.so somewhere first. Prints per case the
medians of each build, B / A, and the median over ROUNDS of the per-round B / A.
"""
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_two_builds import alternate, load  # noqa: E402


def main():
    a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
    for k in (a, b):
        if hasattr(k, "set_num_threads"):
            k.set_num_threads(1)
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 21
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    for case in sys.argv[3].split(","):
        f = case.split(":")
        kind, n, hw, c = f[0], int(f[1]), int(f[2]), int(f[3])
        s = int(f[4]) if len(f) > 4 else 2
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
        w = rng.standard_normal((3, 3, c, c), dtype=np.float32)
        bias = rng.standard_normal(c, dtype=np.float32)
        oh = -(-hw // s)
        dy = rng.standard_normal((n, oh, oh, c), dtype=np.float32)
        tot = max(0, (oh - 1) * s + 3 - hw)
        pads, st, one = (tot // 2, tot - tot // 2, tot // 2, tot - tot // 2), (s, s), (1, 1)
        fn = {"fwd": lambda k: k.conv2d_forward(x, w, bias, st, pads, one, 1),
              "bwd-data": lambda k: k.conv2d_backward_data(dy, w, x.shape, st, pads, one, 1),
              "bwd-filter": lambda k: k.conv2d_backward_weights(dy, x, w.shape, st, pads, one, 1,
                                                                True)}[kind]
        ta, tb, ratios = [], [], []
        fn(a), fn(b)
        for _ in range(rounds):
            ra, rb = alternate(fn, a, b, reps)
            ratios.append(statistics.median(rb) / statistics.median(ra))
            ta += ra
            tb += rb
        ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
        print(f"{case}: A {ma:.3f} B {mb:.3f} ms  B/A {mb / ma:.3f}  rounds "
              + " ".join(f"{r:.3f}" for r in ratios), flush=True)


if __name__ == "__main__":
    main()
