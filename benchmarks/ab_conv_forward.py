"""Paired timing of two builds of fastconv._C on conv2d_forward + bias + activation (+ residual),
as an inference plan calls it, in ONE process (benchmarks/ab_two_builds.py's method).

  PYTHONPATH=. python benchmarks/ab_conv_forward.py A.so B.so "N,H,W,CIN,COUT[,K,STRIDE,ACT[,res]];..." REPS
  K: square kernel (default 1), 'same'-style symmetric pads (K-1)//2; STRIDE default 1;
  ACT default relu6; a fifth field 'res' passes a residual of y's shape.
  NT=2 sets 2 native threads (then WALL=1 for wall-clock; the default clock is the calling
  thread's CPU time, right for 1 thread).

Calls alternate A B / B A, each output kept alive for 24 calls (the pool hands back a block
written 24 calls earlier, out of cache, as in a network's plan). Prints per case the medians,
B / A, the 25th percentiles and the minima (ms). Swap the two builds in a second run: the
module loaded second may read a few % slower.
"""
import os
import statistics
import sys
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages
from benchmarks.ab_two_builds import load  # noqa: E402

CLK = time.perf_counter if os.environ.get("WALL") else time.thread_time


def main(argv):
    a, b = load(argv[0], "a"), load(argv[1], "b")
    for m in (a, b):
        m.set_num_threads(int(os.environ.get("NT", "1")))
    reps = int(argv[3])
    kept = []
    for case in argv[2].split(";"):
        f = case.split(",")
        n, h, w, ci, co = (int(v) for v in f[:5])
        kh = int(f[5]) if len(f) > 5 else 1
        s = int(f[6]) if len(f) > 6 else 1
        act = f[7] if len(f) > 7 else "relu6"
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, h, w, ci), dtype=np.float32)
        wt = (rng.standard_normal((kh, kh, ci, co)) / np.sqrt(kh * kh * ci)).astype(np.float32)
        bias = rng.standard_normal(co, dtype=np.float32)
        p = (kh - 1) // 2
        res = None
        if len(f) > 8:
            oh, ow = (h + 2 * p - kh) // s + 1, (w + 2 * p - kh) // s + 1
            res = rng.standard_normal((n, oh, ow, co), dtype=np.float32)
        ta, tb = [], []
        for i in range(reps):
            for k, ts in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
                t = CLK()
                y = k.conv2d_forward(x, wt, bias, (s, s), (p, p, p, p), (1, 1), 1, act, res)
                ts.append(CLK() - t)
                kept.append(y)
                del kept[:-24]
        ma, mb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
        qa, qb = np.percentile(ta, 25) * 1e3, np.percentile(tb, 25) * 1e3
        print(f"{case:28s} A {ma:8.3f}  B {mb:8.3f}  B/A {mb / ma:.3f}  "
              f"(p25 {qa:.3f} {qb:.3f} {qb / qa:.3f}; min {min(ta) * 1e3:.3f} {min(tb) * 1e3:.3f})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
