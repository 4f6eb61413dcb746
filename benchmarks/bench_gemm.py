"""fastconv's own AVX-512 SGEMM ('native', csrc/cpu/gemm.cpp) against OpenBLAS, side by side.

Part 1, serial (1 thread): one sgemm call per shape through the _C._sgemm hook, on the
shapes the kernels issue (per-thread im2col chunks of ~1 MiB, their backward passes, Winograd
tiles, dense layers) plus 2048^3. Part 2, the conv/dense kernels themselves (OpenMP team,
default 2 threads) with the backend switched by fastconv.set_gemm_backend. Both backends run
in the same process, interleaved repeat by repeat (a shared machine's drift hits both alike).
Reported: GFLOP/s of the median (and of the best) repeat, native/OpenBLAS ratio of the
medians, and the FMA peak of one core (a 512-bit FMA loop, best of 20).

    PYTHONPATH=. python benchmarks/bench_gemm.py [--repeats 9] [--threads 2] [--quick]

OpenBLAS runs whatever kernels its environment picks (OPENBLAS_CORETYPE); the header line
says which.
"""
import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fastconv  # noqa: E402
from fastconv import _C  # noqa: E402
from fastconv.bench.harness import time_interleaved  # noqa: E402

# label, trans_a, trans_b, m, n, k   (C is m x n, reduction k)
SERIAL_SHAPES = [
    ("square 2048^3", False, False, 2048, 2048, 2048),
    ("fwd stem 7x7 s2 (K=147)", False, False, 1680, 64, 147),
    ("fwd 56x56 64->64 k3", False, False, 448, 64, 576),
    ("fwd 56x56 64->128 k3 s2", False, False, 448, 128, 576),
    ("fwd 14x14 256->256 k3", False, False, 112, 256, 2304),
    ("fwd 7x7 512->512 k3", False, False, 56, 512, 4608),
    ("fwd 28x28 256->64 k1", False, False, 1008, 64, 256),
    ("fwd lenet conv2 (K=150, Cout=16)", False, False, 4000, 16, 150),
    ("bwd data 56x56 64->64 k3", False, True, 448, 576, 64),
    ("bwd data 14x14 256->256 k3", False, True, 112, 2304, 256),
    ("bwd weights 56x56 64->64 k3", True, False, 576, 64, 448),
    ("bwd weights 14x14 256->256 k3", True, False, 2304, 256, 112),
    ("winograd 256x64x64", False, False, 256, 64, 64),
    ("winograd 64x256x256", False, False, 64, 256, 256),
    ("winograd 128x512x512", False, False, 128, 512, 512),
    ("dense fwd 256x4096 @ 4096x1000", False, False, 256, 1000, 4096),
    ("dense dx 256x1000 @ (4096x1000)^T", False, True, 256, 4096, 1000),
    ("dense dw (256x4096)^T @ 256x1000", True, False, 4096, 1000, 256),
    ("dense fwd 256x400 @ 400x120", False, False, 256, 120, 400),
    ("both transposed 512^3", True, True, 512, 512, 512),
]

# name, N, H, W, Cin, Cout, k, stride, pad
CONV_LAYERS = [
    ("stem 7x7 s2", 8, 224, 224, 3, 64, 7, 2, 3),
    ("56x56 64->64 k3", 32, 56, 56, 64, 64, 3, 1, 1),
    ("14x14 256->256 k3", 32, 14, 14, 256, 256, 3, 1, 1),
    ("28x28 256->64 k1", 32, 28, 28, 256, 64, 1, 1, 0),
]
DENSE_LAYERS = [("dense 256x4096->1000", 256, 4096, 1000), ("dense 256x400->120", 256, 400, 120)]


def gflops(flops, seconds):
    return flops / seconds * 1e-9


def row(label, flops, times):
    nat, ob = times["native"], times["openblas"]
    mn, mo = statistics.median(nat), statistics.median(ob)
    return (f"| {label} | {gflops(flops, mo):.0f} ({gflops(flops, min(ob)):.0f}) | "
            f"{gflops(flops, mn):.0f} ({gflops(flops, min(nat)):.0f}) | {mo / mn:.2f} |")


def serial_case(ta, tb, m, n, k, rng):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32).ravel()
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32).ravel()
    c = np.zeros(m * n, np.float32)
    lda, ldb = (m if ta else k), (k if tb else n)

    def run(backend):
        return lambda: _C._sgemm(ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, n, backend)
    return {"openblas": run("openblas"), "native": run("native")}


def with_backend(fn):
    """{backend: callable} running fn with that gemm backend selected."""
    def make(backend):
        def call():
            fastconv.set_gemm_backend(backend)
            fn()
        return call
    return {"openblas": make("openblas"), "native": make("native")}


def conv_cases(layer, rng):
    name, n, h, w, cin, cout, k, s, p = layer
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = (rng.standard_normal((k, k, cin, cout)) * 0.1).astype(np.float32)
    strides, pads, dil = (s, s), (p, p, p, p), (1, 1)
    y = _C.conv2d_forward(x, wt, None, strides, pads, dil, 1)
    flops = 2.0 * y.shape[0] * y.shape[1] * y.shape[2] * k * k * cin * cout
    return [
        (f"{name} forward", flops, lambda: _C.conv2d_forward(x, wt, None, strides, pads, dil, 1)),
        (f"{name} backward data", flops,
         lambda: _C.conv2d_backward_data(y, wt, x.shape, strides, pads, dil, 1)),
        (f"{name} backward weights", flops,
         lambda: _C.conv2d_backward_weights(y, x, wt.shape, strides, pads, dil, 1, False)),
    ]


def dense_cases(layer, rng):
    name, n, k, m = layer
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    flops = 2.0 * n * k * m
    return [(f"{name} forward", flops, lambda: _C.dense_forward(x, w, None)),
            (f"{name} backward (dx + dw)", 2 * flops, lambda: _C.dense_backward(dy, x, w))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=9, help="timed repeats per case (>= 5)")
    ap.add_argument("--threads", type=int, default=2, help="OpenMP threads for part 2")
    ap.add_argument("--quick", action="store_true", help="a few small shapes (smoke test)")
    args = ap.parse_args(argv)
    if not _C.has_native_gemm:
        print("fastconv was built without AVX-512: no native gemm to compare")
        return 1
    rng = np.random.default_rng(0)
    saved_backend, saved_threads = fastconv.get_gemm_backend(), fastconv.get_num_threads()
    serial = SERIAL_SHAPES if not args.quick else [s for s in SERIAL_SHAPES if s[3] * s[4] * s[5] <= 1 << 24]
    convs = CONV_LAYERS if not args.quick else []
    denses = DENSE_LAYERS if not args.quick else DENSE_LAYERS[1:]
    peak = _C._fma_peak_gflops()
    print(f"OpenBLAS core: {_C.blas_corename()} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}); "
          f"FMA peak one core: {peak:.0f} GFLOP/s; median (best) of {args.repeats} interleaved repeats\n")
    try:
        fastconv.set_num_threads(1)
        print("Serial sgemm (1 thread), GFLOP/s\n")
        print("| shape | ta tb | m x n x k | OpenBLAS | native | native/OpenBLAS | native % of peak |")
        print("|---|---|---|---|---|---|---|")
        for label, ta, tb, m, n, k in serial:
            flops = 2.0 * m * n * k
            times = time_interleaved(serial_case(ta, tb, m, n, k, rng), args.repeats)
            r = row(label, flops, times)
            pct = 100 * gflops(flops, statistics.median(times["native"])) / peak
            head, rest = r.split(" | ", 1)
            print(f"{head} | {'T' if ta else 'N'}{'T' if tb else 'N'} | {m}x{n}x{k} | {rest} {pct:.0f}% |")

        fastconv.set_num_threads(args.threads)
        print(f"\nThrough the kernels ({args.threads} threads), GFLOP/s\n")
        print("| case | OpenBLAS | native | native/OpenBLAS |")
        print("|---|---|---|---|")
        for layer in convs:
            for label, flops, fn in conv_cases(layer, rng):
                print(row(label, flops, time_interleaved(with_backend(fn), args.repeats)))
        for layer in denses:
            for label, flops, fn in dense_cases(layer, rng):
                print(row(label, flops, time_interleaved(with_backend(fn), args.repeats)))
    finally:
        fastconv.set_gemm_backend(saved_backend)
        fastconv.set_num_threads(saved_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
