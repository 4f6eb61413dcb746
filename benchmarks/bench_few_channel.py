"""Fixed few-channel conv cases (issue 18 item 3): forward, backward data and backward filter of
tiny-channel 1x1 and 3x3 convs, stride 1 and 2, plus MobileNet's stem (3x3 s2 3->32 224x224) at
batch 1. Prints the minimum and median ms of --repeats runs per case and pass.

    PYTHONPATH=. python benchmarks/bench_few_channel.py --threads 1 --repeats 15
Run it against another build by pointing PYTHONPATH at that build's package folder.
"""
import argparse
import statistics
import time

import numpy as np

import fastconv
from fastconv import functional as F

# (name, N, H, Cin, Cout, k, stride)
CASES = [
    ("1x1 s2 C=1", 256, 56, 1, 1, 1, 2),
    ("1x1 s1 C=1", 256, 112, 1, 1, 1, 1),
    ("1x1 s1 C=3", 256, 56, 3, 3, 1, 1),
    ("1x1 s2 C=6", 256, 56, 6, 6, 1, 2),
    ("1x1 s1 C=16", 32, 56, 16, 16, 1, 1),
    ("1x1 s2 C=16", 256, 56, 16, 16, 1, 2),
    ("3x3 s2 C=1", 256, 56, 1, 1, 3, 2),
    ("3x3 s1 C=1", 256, 56, 1, 1, 3, 1),
    ("3x3 s1 C=16", 32, 56, 16, 16, 3, 1),
    ("3x3 s2 C=16", 256, 56, 16, 16, 3, 2),
    ("stem b1 3x3 s2 3->32", 1, 224, 3, 32, 3, 2),
]


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times), 1e3 * statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--only", default="", help="comma-separated substrings of case names")
    args = ap.parse_args()
    fastconv.set_num_threads(args.threads)
    from fastconv.backend import kernels
    rng = np.random.default_rng(0)
    print(f"threads={args.threads} repeats={args.repeats}; ms min / median")
    print(f"{'case':24s} {'fwd':>15s} {'bwd-data':>15s} {'bwd-filter':>15s}")
    for name, n, h, cin, cout, k, s in CASES:
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        x = rng.standard_normal((n, h, h, cin), dtype=np.float32)
        w = rng.standard_normal((k, k, cin, cout), dtype=np.float32)
        b = rng.standard_normal((cout,), dtype=np.float32)
        y = F.conv2d(x, w, b, strides=s, padding="same")
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        pads = F.resolve_padding("same", x.shape[1:3], (k, k), (s, s))
        row = [timed(lambda: F.conv2d(x, w, b, strides=s, padding="same"), args.repeats),
               timed(lambda: kernels().conv2d_backward_data(dy, w, x.shape, (s, s), pads, (1, 1), 1),
                     args.repeats),
               timed(lambda: F.conv2d_backward(dy, x, w, strides=s, padding="same", need_dx=False),
                     args.repeats)]
        print(f"{name:24s} " + " ".join(f"{a:7.3f}/{m:7.3f}" for a, m in row), flush=True)


if __name__ == "__main__":
    main()
