"""Native conv kernels vs the sgemm ceiling and the NumPy oracle.

For each layer: median time (5 runs after a warm-up) of the native forward, backward-data and
backward-weights passes, their GFLOP/s (2*N*OH*OW*KH*KW*Cin_g*Cout per pass), the oracle's
time for the same three passes (run once; skipped when it would take over 20 s) and the
speed-up. The ceiling is _C.dense_forward on 2048x2048x2048, i.e. the same OpenBLAS sgemm the
kernels call (numpy's matmul links a different BLAS).

    PYTHONPATH=. python benchmarks/bench_conv.py [--quick] [--threads N] [--memory]
"""
import argparse
import resource
import statistics
import time

import numpy as np

from fastconv import _C
from fastconv import reference as R

from fastconv.bench.specs import CONV_LAYERS as LAYERS
ORACLE_BUDGET_S = 20.0


def same_pads(size, k, s):
    """TensorFlow 'same': out = ceil(in/s); the odd extra pad goes after (bottom/right)."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def run_times(fn, repeat=5, clock=time.perf_counter):
    fn()  # warm-up (page faults, OpenBLAS buffers)
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return times


def median_time(fn, repeat=5):
    return statistics.median(run_times(fn, repeat))


def sgemm_ceiling(size, clock=time.perf_counter):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    # Best run, not median: on a shared machine the ceiling should not be lowered by noise
    # (a higher ceiling makes the kernels' fraction of it conservative).
    t = min(run_times(lambda: _C.dense_forward(a, b, None), clock=clock))
    return 2 * size**3 / t / 1e9


def bench_layer(layer, quick, oracle_rate):
    name, n, h, w, cin, cout, k, s, padding, groups = layer
    if quick:
        n, h, w = min(n, 2), max(k, h // 4), max(k, w // 4)
    pads = (same_pads(h, k, s) + same_pads(w, k, s)) if padding == "same" else (0, 0, 0, 0)
    args = ((s, s), pads, (1, 1), groups)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
    wt = rng.standard_normal((k, k, cin // groups, cout), dtype=np.float32)
    b = rng.standard_normal(cout, dtype=np.float32)
    y = _C.conv2d_forward(x, wt, b, *args)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    flops = 2.0 * n * y.shape[1] * y.shape[2] * k * k * (cin // groups) * cout
    times = [median_time(lambda: _C.conv2d_forward(x, wt, b, *args)),
             median_time(lambda: _C.conv2d_backward_data(dy, wt, x.shape, *args)),
             median_time(lambda: _C.conv2d_backward_weights(dy, x, wt.shape, *args, True))]
    row = {"name": name, "shape": f"N={n} {h}x{w} {cin}->{cout} k{k} s{s} {padding}",
           "times": times, "gflops": [flops / t / 1e9 for t in times], "oracle": None}
    # The oracle's speed is roughly proportional to the flop count: estimate before running.
    if oracle_rate is None or 3 * flops / oracle_rate <= ORACLE_BUDGET_S:
        t0 = time.perf_counter()
        R.conv2d_forward(x, wt, b, *args)
        R.conv2d_backward_data(dy, wt, x.shape, *args)
        R.conv2d_backward_weights(dy, x, wt.shape, *args, True)
        row["oracle"] = time.perf_counter() - t0
        row["oracle_rate"] = 3 * flops / row["oracle"]
    return row


def peak_rss_check():
    """Forward of N=256 224x224 64->64 k3 'same': peak RSS beyond x, w and y is the workspace."""
    n, h, w, c = 256, 224, 224, 64
    x = np.ones((n, h, w, c), np.float32)  # touched: counted in the baseline
    wt = np.full((3, 3, c, c), 1e-3, np.float32)
    # Baseline: resident memory now (x touched). The peak after the call is far above any
    # earlier peak (y alone is 3 GiB), so ru_maxrss then is this call's peak.
    with open("/proc/self/statm") as f:
        base = int(f.read().split()[1]) * resource.getpagesize()
    t0 = time.perf_counter()
    y = _C.conv2d_forward(x, wt, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    extra = peak - base - y.nbytes
    mib = 1 << 20
    print(f"memory: x {x.nbytes / mib:.0f} MiB, y {y.nbytes / mib:.0f} MiB, forward {dt:.1f} s; "
          f"peak RSS grew by {(peak - base) / mib:.0f} MiB = y + {extra / mib:.1f} MiB "
          f"(workspace limit {_C.get_workspace_limit() / mib:.0f} MiB; whole-batch col would be "
          f"{n * h * w * 9 * c * 4 / mib:.0f} MiB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--threads", type=int, default=None, help="native thread count")
    ap.add_argument("--memory", action="store_true", help="peak-RSS check on a 3.3 GB input")
    a = ap.parse_args()
    if a.threads:
        _C.set_num_threads(a.threads)
    if a.memory:
        peak_rss_check()
    ceiling = sgemm_ceiling(256 if a.quick else 2048)
    print(f"threads {_C.get_num_threads()}, conv algorithm {_C.get_conv_algorithm()!r} (3x3 stride-1 "
          f"layers: Winograd; im2col vs Winograd: benchmarks/bench_winograd.py), sgemm ceiling (_C.dense_forward "
          f"{256 if a.quick else 2048}^3): {ceiling:.1f} GFLOP/s")
    hdr = (f"{'layer':<22} {'shape':<34} {'fwd ms':>8} {'bwd-d ms':>9} {'bwd-w ms':>9} "
           f"{'fwd GF/s':>8} {'bd GF/s':>8} {'bw GF/s':>8} {'fwd/ceil':>8} {'oracle s':>9} {'speedup':>8}")
    print(hdr)
    print("-" * len(hdr))
    oracle_rate = None
    for layer in LAYERS:
        r = bench_layer(layer, a.quick, oracle_rate)
        oracle_rate = r.get("oracle_rate", oracle_rate)
        t, g = r["times"], r["gflops"]
        orc = f"{r['oracle']:9.2f} {r['oracle'] / sum(t):7.1f}x" if r["oracle"] else f"{'skipped':>9} {'-':>8}"
        print(f"{r['name']:<22} {r['shape']:<34} {t[0] * 1e3:8.2f} {t[1] * 1e3:9.2f} {t[2] * 1e3:9.2f} "
              f"{g[0]:8.1f} {g[1]:8.1f} {g[2]:8.1f} {g[0] / ceiling:8.0%} {orc}", flush=True)


if __name__ == "__main__":
    main()
