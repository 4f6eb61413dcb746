"""Paired timing of two builds' depthwise 3x3 forward + relu6 as MobileNet's inference plan calls
it, both builds' _C in ONE process, 1 thread, calls alternating A B B A / B A A B.

Each call's output is an output-pool block written 24 calls earlier (out of cache, as in a
network's plan) and x is rewritten before each call (a previous step's output, in cache).
Prints wall-clock (perf_counter) and thread-CPU medians, the wall minimum, and B / A. (On a
guest whose thread CPU time drops the hypervisor's steal, both clocks are shown: they agreed
within 2% here at 1 thread.)

  PYTHONPATH=. python benchmarks/ab_depthwise_plan.py A.so B.so "N,H,W,C,S,PADS;..." REPS
  S: stride (1 or 2); PADS: k = the fused ZeroPadding2D's (0, 1, 0, 1), same = (1, 1, 1, 1), valid
"""
import os
import statistics
import sys
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages
from benchmarks.ab_two_builds import load  # noqa: E402

PADS = {"k": (0, 1, 0, 1), "same": (1, 1, 1, 1), "valid": (0, 0, 0, 0)}


def main(argv):
    a, b = load(argv[0], "a"), load(argv[1], "b")
    for k in (a, b):
        k.set_num_threads(1)
    reps = int(argv[3])
    for case in argv[2].split(";"):
        n, h, w_, c, s, p = case.split(",")
        n, h, w_, c, s, pads = int(n), int(h), int(w_), int(c), int(s), PADS[p]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, h, w_, c), dtype=np.float32)
        x0 = x.copy()
        wd = rng.standard_normal((3, 3, 1, c), dtype=np.float32)
        bias = rng.standard_normal(c, dtype=np.float32)

        def f(k):
            return k.conv2d_forward(x, wd, bias, (s, s), pads, (1, 1), c, "relu6")
        if not np.allclose(f(a), f(b), rtol=1e-5, atol=1e-5):
            raise SystemExit("the two builds' outputs differ")
        kept, wall, cpu = [], {a: [], b: []}, {a: [], b: []}
        for i in range(reps):
            for k in ((a, b, b, a) if i % 2 == 0 else (b, a, a, b)):
                np.copyto(x, x0)
                t0, c0 = time.perf_counter(), time.thread_time()
                y = f(k)
                c1, t1 = time.thread_time(), time.perf_counter()
                wall[k].append(t1 - t0)
                cpu[k].append(c1 - c0)
                kept.append(y)
                del kept[:-24]
        wa, wb = (statistics.median(wall[k]) * 1e3 for k in (a, b))
        ca, cb = (statistics.median(cpu[k]) * 1e3 for k in (a, b))
        ma, mb = (min(wall[k]) * 1e3 for k in (a, b))
        print(f"{case}: wall median A {wa:.3f} B {wb:.3f} B/A {wb / wa:.3f} | wall min A {ma:.3f} B {mb:.3f} "
              f"B/A {mb / ma:.3f} | cpu median A {ca:.3f} B {cb:.3f} B/A {cb / ca:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
