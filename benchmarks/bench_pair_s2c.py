"""Paired before/after timings of 3x3 stride-2 few-channel conv passes, 1 thread, CPU time.

Usage: python benchmarks/bench_pair_s2c.py BEFORE_TREE AFTER_TREE [--rounds 7] [--cases ...]
Each round runs one subprocess per tree (alternating which goes first), each timing every
case (median of `reps` calls of time.thread_time); the table gives each tree's median over
the rounds. Cases: pass:N:HxW:C (pass fwd, bwd-data, bwd-filter), 'same' padding.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
import fastconv
from fastconv import _C
import fastconv.functional as F
fastconv.set_num_threads(1)
out = {}
for case in sys.argv[1].split(","):
    kind, n, hw, c = case.split(":")
    n, c = int(n), int(c); h = w = int(hw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    pads = F.resolve_padding("same", (h, w), (3, 3), (2, 2))
    oh, ow = (h + 1) // 2, (w + 1) // 2
    dy = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
    if kind == "fwd":
        fn = lambda: _C.conv2d_forward(x, wt, None, (2, 2), pads, (1, 1), 1)
    elif kind == "bwd-data":
        fn = lambda: _C.conv2d_backward_data(dy, wt, x.shape, (2, 2), pads, (1, 1), 1)
    else:
        fn = lambda: _C.conv2d_backward_weights(dy, x, wt.shape, (2, 2), pads, (1, 1), 1, True)
    fn()
    reps = max(5, min(200, int(0.2 / max(1e-5, (lambda t0: (fn(), time.thread_time() - t0)[1])(time.thread_time())))))
    ts = []
    for _ in range(reps):
        t0 = time.thread_time(); fn(); ts.append(time.thread_time() - t0)
    out[case] = sorted(ts)[len(ts) // 2] * 1e3
print(json.dumps(out))
"""

DEFAULT = ",".join(f"{p}:{n}:{hw}:{c}" for c in (1, 3, 6) for p in ("fwd", "bwd-data", "bwd-filter")
                   for n, hw in ((256, 56), (32, 112), (256, 112), (256, 28), (256, 14), (256, 7)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cases", default=DEFAULT)
    a = ap.parse_args()
    res = {"before": [], "after": []}
    here = os.path.dirname(os.path.abspath(__file__))
    for r in range(a.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for tag in order:
            env = dict(os.environ, PYTHONPATH=getattr(a, tag), OMP_NUM_THREADS="1")
            o = subprocess.run([sys.executable, "-c", CHILD, a.cases], env=env, cwd=here,
                               capture_output=True, text=True, check=True)
            res[tag].append(json.loads(o.stdout.strip().splitlines()[-1]))
    print(f"load average: {os.getloadavg()}")
    print("| case | before ms | after ms | after/before |")
    print("|---|---:|---:|---:|")
    for case in a.cases.split(","):
        b = statistics.median(d[case] for d in res["before"])
        f = statistics.median(d[case] for d in res["after"])
        print(f"| {case} | {b:.3f} | {f:.3f} | {f / b:.2f} |")


if __name__ == "__main__":
    main()
