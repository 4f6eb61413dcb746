"""Native (fastconv._C) vs NumPy oracle timings for pooling, batch norm, bias+activation and
softmax cross-entropy, with a memory-bandwidth reference.

These ops are memory-bound, so besides the oracle ratio each row reports an effective GB/s:
compulsory bytes (every input read once, every output written once) over the median time,
to be read against the numpy-copy line (a copy moves 2 bytes per byte copied: read + write).

    PYTHONPATH=. python benchmarks/bench_ops.py [--threads N] [--reps 5] [--no-oracle]
"""
import argparse
import statistics
import time

import numpy as np

import fastconv
from fastconv import _C
from fastconv import reference as R


def median_ms(fn, reps):
    fn()  # warm-up: first touch of output pages, thread pool start
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def copy_bandwidth(reps):
    src = np.ones(256 << 20 >> 2, np.float32)  # 256 MB
    dst = np.empty_like(src)
    ms = median_ms(lambda: np.copyto(dst, src), reps)
    return ms, 2 * src.nbytes / (ms * 1e-3) / 1e9


def nbytes(*arrays):
    return sum(a.nbytes for a in arrays)


def cases():
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    out = []

    x = f32(32, 112, 112, 64)
    # 3x3 stride 2 'same' on 112: out 56, total pad 1 -> (0, 1) each axis.
    mp = ((3, 3), (2, 2), (0, 1, 0, 1))
    y = _C.max_pool2d_forward(x, *mp)
    dy = f32(*y.shape)
    out.append(("max_pool 3x3 s2 same fwd", lambda m: m.max_pool2d_forward(x, *mp), nbytes(x, y)))
    out.append(("max_pool 3x3 s2 same bwd", lambda m: m.max_pool2d_backward(dy, x, *mp), nbytes(dy, x, x)))
    ap = ((2, 2), (2, 2), (0, 0, 0, 0))
    ya = _C.avg_pool2d_forward(x, *ap)
    dya = f32(*ya.shape)
    out.append(("avg_pool 2x2 fwd", lambda m: m.avg_pool2d_forward(x, *ap), nbytes(x, ya)))
    out.append(("avg_pool 2x2 bwd", lambda m: m.avg_pool2d_backward(dya, x.shape, *ap), nbytes(dya, x)))

    xb = f32(32, 56, 56, 64)
    gamma, beta = f32(64), f32(64)
    _, mean, _, inv_std = _C.batch_norm_forward_train(xb, gamma, beta, 1e-3)
    dyb = f32(*xb.shape)
    out.append(("batch_norm train fwd", lambda m: m.batch_norm_forward_train(xb, gamma, beta, 1e-3),
                nbytes(xb, xb)))
    out.append(("batch_norm bwd", lambda m: m.batch_norm_backward(dyb, xb, gamma, mean, inv_std),
                nbytes(dyb, xb, xb)))
    yr = _C.bias_act_forward(xb, beta, "relu")
    out.append(("bias+relu fwd", lambda m: m.bias_act_forward(xb, beta, "relu"), nbytes(xb, yr)))
    out.append(("bias+relu bwd", lambda m: m.bias_act_backward(dyb, yr, "relu", True), nbytes(dyb, yr, yr)))

    logits = f32(256, 1000) * 3
    labels = rng.integers(0, 1000, 256)
    loss, probs = _C.softmax_cross_entropy_forward(logits, labels)
    dloss = np.ones(256, np.float32)
    out.append(("softmax-CE 256x1000 fwd", lambda m: m.softmax_cross_entropy_forward(logits, labels),
                nbytes(logits, probs, loss, labels)))
    out.append(("softmax-CE 256x1000 bwd", lambda m: m.softmax_cross_entropy_backward(probs, labels, dloss),
                nbytes(probs, probs, labels, dloss)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="native thread count (default: OpenMP's)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-oracle", action="store_true", help="skip the (slow) NumPy oracle")
    args = ap.parse_args()
    if args.threads:
        fastconv.set_num_threads(args.threads)

    copy_ms, copy_gbs = copy_bandwidth(args.reps)
    print(f"threads={fastconv.get_num_threads()}  medians of {args.reps}")
    print(f"memory reference: numpy copy of 256 MB: {copy_ms:.1f} ms, {copy_gbs:.1f} GB/s (read + write)\n")
    print(f"| {'op':26s} | native ms | oracle ms | oracle/native | native GB/s | % of copy |")
    print(f"|{'-' * 28}|----------:|----------:|--------------:|------------:|----------:|")
    for name, call, traffic in cases():
        native = median_ms(lambda: call(_C), args.reps)
        gbs = traffic / (native * 1e-3) / 1e9
        if args.no_oracle:
            oracle_s, ratio_s = "-", "-"
        else:
            oracle = median_ms(lambda: call(R), args.reps)
            oracle_s, ratio_s = f"{oracle:.1f}", f"{oracle / native:.1f}x"
        print(f"| {name:26s} | {native:9.2f} | {oracle_s:>9s} | {ratio_s:>13s} | {gbs:11.1f} | "
              f"{100 * gbs / copy_gbs:8.0f}% |", flush=True)


if __name__ == "__main__":
    main()
