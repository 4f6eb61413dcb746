"""MobileNet's nine 3x3 depthwise + relu6 forwards: this tree's _C beside another build's.

Loads a second _C (--old-so: e.g. a copy of fastconv/_C*.so saved before a change) next to
this tree's in one process and times both on the same arrays, interleaved call by call with a
copy of the same bytes (inputs read + output written), so drift on a shared machine hits all
three alike. Thread CPU time per call, medians. --evict-mb N touches an N MiB buffer before
each call: 3 leaves the tensors in L3 only (what a step of the inference plan sees at batch 1),
32 in memory only; 0 (default) leaves them in L2/L3 from the previous call. Also checks the
two builds agree.

    PYTHONPATH=. python benchmarks/bench_depthwise_ab.py --old-so /tmp/before/_C.cpython-311-x86_64-linux-gnu.so
        [--threads 1] [--batch 1] [--evict-mb 0] [--repeats 101]
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastconv  # noqa: E402
from benchmarks.bench_bandwidth import MOBILENET_DEPTHWISE  # noqa: E402


def load_extension(path):
    spec = importlib.util.spec_from_file_location("_C", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old-so", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--evict-mb", type=int, default=0)
    p.add_argument("--repeats", type=int, default=None, help="default 101 at batch 1, else 7")
    args = p.parse_args(argv)
    old, new = load_extension(args.old_so), fastconv._C
    for m in (old, new):
        m.set_num_threads(args.threads)
    repeats = args.repeats or (101 if args.batch == 1 else 7)
    big = np.ones(max(1, args.evict_mb << 18), np.float32)
    rng = np.random.default_rng(0)
    clock = time.thread_time
    print(f"threads {args.threads}, batch {args.batch}, evict {args.evict_mb} MiB, medians of {repeats}, "
          f"thread CPU ms")
    print("| layer | old ms | new ms | new/old | new GB/s | copy GB/s | new % copy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    totals = {"old": 0.0, "new": 0.0, "copy": 0.0}
    for h, c, s in MOBILENET_DEPTHWISE:
        x = rng.standard_normal((args.batch, h, h, c)).astype(np.float32)
        w = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        conv_args = ((s, s), (1, 1, 1, 1) if s == 1 else (0, 1, 0, 1), (1, 1), c, "relu6", None)
        y_old, y_new = old.conv2d_forward(x, w, b, *conv_args), new.conv2d_forward(x, w, b, *conv_args)
        np.testing.assert_allclose(y_new, y_old, rtol=1e-5, atol=1e-5)
        nbytes = x.nbytes + y_new.nbytes
        src = np.ones(nbytes // 8, np.float32)  # a copy of src moves nbytes (read + write)
        dst = np.empty_like(src)
        fns = {"old": lambda: old.conv2d_forward(x, w, b, *conv_args),
               "new": lambda: new.conv2d_forward(x, w, b, *conv_args),
               "copy": lambda: new.parallel_copy(dst, src)}
        times = {k: [] for k in fns}
        for _ in range(3):
            for f in fns.values():
                f()
        for _ in range(repeats):
            for k, f in fns.items():
                if args.evict_mb:
                    np.multiply(big, 1.0, out=big)
                t0 = clock()
                f()
                times[k].append(clock() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        for k in totals:
            totals[k] += med[k]
        print(f"| {args.batch}x{h}x{h}x{c} /{s} | {med['old'] * 1e3:.4f} | {med['new'] * 1e3:.4f} | "
              f"{med['new'] / med['old']:.2f} | {nbytes / med['new'] / 1e9:.0f} | {nbytes / med['copy'] / 1e9:.0f} | "
              f"{100 * med['copy'] / med['new']:.0f} |")
    print(f"| total | {totals['old'] * 1e3:.3f} | {totals['new'] * 1e3:.3f} | {totals['new'] / totals['old']:.2f} | "
          f"| | {100 * totals['copy'] / totals['new']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
