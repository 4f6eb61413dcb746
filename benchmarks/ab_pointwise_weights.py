"""Paired timing of two builds' stride-1 1x1 conv passes in ONE process (ab_two_builds' loader and
alternation; thread CPU time at 1 thread; at >1 threads process CPU time and wall as well).
Helper G's script of stop 38 (/work/scratch/G/ab_pw.py), kept by helper W (stop 39) for the
avx2 weight pass (csrc/cpu/pointwise_weights_avx2.cpp).
  python benchmarks/ab_pointwise_weights.py A.so B.so "pass:N:HW:CIN:COUT,..." THREADS REPS [ROUNDS]
pass: fwd (with bias) / bwd-data / bwd-filter (with db). ROUNDS: REPS alternations each, a B/A per
round printed after the pooled medians."""
import os, statistics, sys, time
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_two_builds import load

def main():
    a, b = load(sys.argv[1], "a"), load(sys.argv[2], "b")
    threads, reps = int(sys.argv[4]), int(sys.argv[5])
    rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    for k in (a, b):
        k.set_num_threads(threads)
    clock = time.thread_time if threads == 1 else time.process_time
    for case in sys.argv[3].split(","):
        kind, n, hw, cin, cout = case.split(":"); n, hw, cin, cout = int(n), int(hw), int(cin), int(cout)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, hw, hw, cin), dtype=np.float32)
        w = rng.standard_normal((1, 1, cin, cout), dtype=np.float32)
        bias = rng.standard_normal(cout, dtype=np.float32)
        dy = rng.standard_normal((n, hw, hw, cout), dtype=np.float32)
        one, z = (1, 1), (0, 0, 0, 0)
        fn = {"fwd": lambda k: k.conv2d_forward(x, w, bias, one, z, one, 1),
              "bwd-data": lambda k: k.conv2d_backward_data(dy, w, x.shape, one, z, one, 1),
              "bwd-filter": lambda k: k.conv2d_backward_weights(dy, x, w.shape, one, z, one, 1, True)}[kind]
        ra, rb = fn(a), fn(b)
        ra = ra[0] if isinstance(ra, tuple) else ra; rb = rb[0] if isinstance(rb, tuple) else rb
        err = float(np.max(np.abs(ra - rb)) / max(1e-30, np.max(np.abs(ra))))
        ca, cb, wa, wb, rr = [], [], [], [], []
        for i in range(reps * rounds):
            if i and i % reps == 0:
                rr.append(statistics.median(cb[-reps:]) / statistics.median(ca[-reps:]))
            for k, c, wl in ((a, ca, wa), (b, cb, wb)) if i % 2 == 0 else ((b, cb, wb), (a, ca, wa)):
                t0, w0 = clock(), time.perf_counter()
                fn(k)
                c.append(clock() - t0); wl.append(time.perf_counter() - w0)
        ma, mb = statistics.median(ca) * 1e3, statistics.median(cb) * 1e3
        line = f"{case} t{threads}: A {ma:.2f} B {mb:.2f} ms B/A {mb / ma:.3f}"
        if threads > 1:
            line += f"  wall A {statistics.median(wa)*1e3:.2f} B {statistics.median(wb)*1e3:.2f} B/A {statistics.median(wb)/statistics.median(wa):.3f}"
        rr.append(statistics.median(cb[-reps:]) / statistics.median(ca[-reps:]))
        if rounds > 1:
            line += "  rounds " + " ".join(f"{r:.3f}" for r in rr)
        print(line + f"  relerr {err:.1e} load {os.getloadavg()[0]:.1f}", flush=True)

main()
