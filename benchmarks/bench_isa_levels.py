"""_C's instruction-set levels side by side, and beside other builds (e.g. a -march=native one):
LeNet-5 training step b256 (modern ReLU + max-pool, and classic), ResNet-18 CIFAR b64 training
step and predict, serial sgemm 1024^3 (the selected backend: fastconv's AVX-512 kernel at the
avx512 level, OpenBLAS below; and OpenBLAS alone, with the kernels it picks for the level).

    python -m benchmarks.bench_isa_levels [--build NAME=FOLDER ...] [--rounds 5] [--threads 1]

A variant is a build (a folder holding a `fastconv` package with its _C; default: the imported
one, named "this") at one level (FASTCONV_ISA; each level the build runs, or the build's only
level for a single-level one). Each variant runs in its own process, round robin over
--rounds rounds, so a shared machine's drift hits all alike; each figure is the median over
rounds of the per-process median. Ratios are against the first variant.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _timed(fn, repeats, min_seconds=0.2):
    """Median ms of `repeats` timings, each the mean of enough calls to last min_seconds."""
    fn()
    t0 = time.perf_counter()
    fn()
    inner = max(1, int(min_seconds / max(time.perf_counter() - t0, 1e-6)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner * 1e3)
    return statistics.median(samples)


def _cases():
    import fastconv as fc
    from fastconv import _C
    from fastconv.bench.models import _batch, fastconv_model, fastconv_step
    rng = np.random.default_rng(0)
    x = rng.random((256, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    modern = fc.models.lenet5((28, 28, 1), 10, variant="modern", classifier_activation=None)
    modern.compile(fc.optimizers.SGD(0.01, momentum=0.9),
                   fc.losses.SparseCategoricalCrossentropy(from_logits=True))
    resnet = fastconv_model("resnet18_cifar", (32, 32, 3), 10)
    xr, _ = _batch(64, (32, 32, 3), 10)
    n = 1024
    a, b = rng.random(n * n, dtype=np.float32), rng.random(n * n, dtype=np.float32)
    c = np.zeros(n * n, np.float32)
    return {
        "LeNet-5 modern step b256": lambda: modern.train_on_batch(x, y),
        "LeNet-5 classic step b256": fastconv_step("lenet5", 256, (28, 28, 1), 10),
        "ResNet-18 CIFAR step b64": fastconv_step("resnet18_cifar", 64, (32, 32, 3), 10),
        "ResNet-18 CIFAR predict b64": lambda: resnet.predict_on_batch(xr),
        "sgemm 1024^3 (1 thread)": lambda: _C._sgemm(False, False, n, n, n, 1.0, a, n, b, n, 0.0, c, n, ""),
        # OpenBLAS with the kernels it picks for the level's CPU (fastconv/_loader.py): how
        # much the vector width alone is worth on this machine
        "sgemm 1024^3 OpenBLAS (1 thread)": lambda: _C._sgemm(False, False, n, n, n, 1.0, a, n, b, n, 0.0, c, n,
                                                            "openblas"),
    }


def worker(threads, repeats):
    import fastconv as fc
    from fastconv import _C
    fc.set_num_threads(threads)
    times = {name: _timed(fn, repeats) for name, fn in _cases().items()}
    level = _C.isa_level() if hasattr(_C, "isa_level") else "native (no levels)"
    print(json.dumps({"level": level, "blas": _C.blas_corename(), "ms": times}))


def _run_worker(folder, level, args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([folder, REPO]))
    env.pop("FASTCONV_ISA", None)
    if level:
        env["FASTCONV_ISA"] = level
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_isa_levels", "--worker",
                           "--threads", str(args.threads), "--repeats", str(args.repeats)],
                          env=env, cwd="/", capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _levels(folder):
    env = dict(os.environ, PYTHONPATH=folder)
    env.pop("FASTCONV_ISA", None)
    out = subprocess.run([sys.executable, "-c", "from fastconv import _C; "
                          "print(*(_C.isa_levels() if hasattr(_C, 'isa_levels') else ['']))"],
                         env=env, cwd="/", capture_output=True, text=True, check=True).stdout
    return out.split() or [""]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_isa_levels")
    ap.add_argument("--build", action="append", default=[], metavar="NAME=FOLDER",
                    help="a build to compare: a folder holding a fastconv package (repeatable)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="timings per case per process")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.threads, args.repeats)
    import fastconv
    builds = [b.split("=", 1) for b in args.build] or [
        ["this", os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))]]
    variants = [(name, folder, level) for name, folder in builds
                for level in reversed(_levels(folder))]
    samples = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            samples[v].append(_run_worker(v[1], v[2], args))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    cases = list(samples[variants[0]][0]["ms"])
    heads = [f"{name} {samples[(name, f, lv)][0]['level']}" for name, f, lv in variants]
    print(f"threads {args.threads}, {args.rounds} rounds, median ms (ratio to {heads[0]}); "
          "OpenBLAS kernels: " + ", ".join(f"{h}: {samples[v][0]['blas']}" for h, v in zip(heads, variants)))
    print("| case | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 1) + "|")
    for case in cases:
        med = [statistics.median(s["ms"][case] for s in samples[v]) for v in variants]
        cells = [f"{m:.2f}" if i == 0 else f"{m:.2f} ({m / med[0]:.2f})" for i, m in enumerate(med)]
        print(f"| {case} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
