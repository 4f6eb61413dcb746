"""Paired per-layer timing of two builds' conv2d_forward as an inference plan calls it: each
build's own conv2d_prepare (None where it keeps no prepared form) passed as `prepared`.

Both .so loaded into one process (benchmarks/ab_two_builds.py's load), calls alternating A B / B A,
1 native thread and thread CPU time (THREADS 2: wall clock, but two builds' thread pools in one
process disturb each other on 2 vCPUs: not a usable pair there). Written for the avx2 level's
packed weights (csrc/cpu/infer_packed_avx2.h; issue 18 item 4, helper P, stop 39).

  PYTHONPATH=. python benchmarks/ab_infer_packed.py A.so B.so THREADS REPS "N,H,C,OC,K,S[,act[,res]];..."

Cases: batch N, H x H input, C -> OC channels, K x K kernel, stride S ('same' pads at stride 1,
the plan's (0, 1, 0, 1) for 3x3 stride 2, none for 1x1 stride 2); act linear / relu / relu6; an
eighth field (any) adds a residual. Prints the medians (ms), B / A and the largest difference.
"""
import os
import statistics
import sys
import time

import numpy as np
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages
from benchmarks.ab_two_builds import load  # noqa: E402

a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
threads, reps = int(sys.argv[3]), int(sys.argv[4])
for m in (a, b):
    m.set_num_threads(threads)
clock = time.thread_time if threads == 1 else time.perf_counter
print(f"threads {threads}, {reps} alternations, clock {'thread cpu' if threads == 1 else 'wall'}")
print("| case | A ms | B ms | B/A | max abs diff |")
print("|---|---:|---:|---:|---:|")
for case in sys.argv[5].split(";"):
    f = case.split(",")
    n, h, c, oc, k, s = (int(v) for v in f[:6])
    act = f[6] if len(f) > 6 else "linear"
    res = len(f) > 7
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, h, c), dtype=np.float32)
    w = (rng.standard_normal((k, k, c, oc), dtype=np.float32) / np.sqrt(k * k * c)).astype(np.float32)
    bias = rng.standard_normal(oc, dtype=np.float32)
    p = k // 2
    pads = (p, p, p, p) if s == 1 else (0, 1, 0, 1) if k == 3 else (0, 0, 0, 0)
    oh = (h + pads[0] + pads[1] - k) // s + 1
    r = rng.standard_normal((n, oh, oh, oc), dtype=np.float32) if res else None
    prep = {m: m.conv2d_prepare(w, x.shape, (s, s), pads, (1, 1), 1) for m in (a, b)}
    call = lambda m: m.conv2d_forward(x, w, bias, (s, s), pads, (1, 1), 1, act, r, prep[m])
    ya, yb = call(a), call(b)
    for _ in range(3):
        call(a), call(b)
    ta, tb = [], []
    for i in range(reps):
        for m, ts in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t = clock(); call(m); ts.append(clock() - t)
    ma, mb = 1e3 * statistics.median(ta), 1e3 * statistics.median(tb)
    tag = f"{n}x{h}x{h} {c}->{oc} {k}x{k} s{s} {act}{' +res' if res else ''}" + (" [B packed]" if prep[b] is not None else "")
    print(f"| {tag} | {ma:.3f} | {mb:.3f} | {mb/ma:.2f} | {float(np.max(np.abs(ya-yb))):.1e} |")
