"""_C's instruction-set levels side by side, and beside other builds (e.g. a -march=native one):
LeNet-5 training step b256 (modern ReLU + max-pool, and classic), ResNet-18 CIFAR b64 training
step and predict, serial sgemm 1024^3 (the selected backend: fastconv's AVX-512 kernel at the
avx512 level, OpenBLAS below; and OpenBLAS alone, with the kernels it picks for the level).

    python -m benchmarks.bench_isa_levels [--build NAME=FOLDER ...] [--rounds 5] [--threads 1]
        [--profile STEPS]

A variant is a build (a folder holding a `fastconv` package with its _C; default: the imported
one, named "this") at one level (FASTCONV_ISA; each level the build runs, or the build's only
level for a single-level one). Each variant runs in its own process, round robin over
--rounds rounds, so a shared machine's drift hits all alike; each figure is the median over
rounds of the per-process median. Ratios are against the first variant.

Also printed: the hardware ceiling per level (one core's multiply-add peak at each vector
width the level runs, and the serial sgemm as a fraction of it), and with --profile each
step split by kernel class with the best ratio the vector width allows.
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


# The clock of every timing in a worker: wall (perf_counter) or this process's CPU time
# (--clock cpu; at 1 thread it leaves out the time other jobs on a shared machine hold the
# core: at load 7 on 2 cores the wall-clock LeNet steps ran at 2-3x their quiet time).
_clock = [time.perf_counter]


def _timed(fn, repeats, min_seconds=0.2):
    """Median ms of `repeats` timings, each the mean of enough calls to last min_seconds."""
    clock = _clock[0]
    fn()
    t0 = clock()
    fn()
    inner = max(1, int(min_seconds / max(clock() - t0, 1e-6)))
    samples = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(inner):
            fn()
        samples.append((clock() - t0) / inner * 1e3)
    return statistics.median(samples)


def _cases(quick=False):
    """quick: the LeNet steps and the sgemms only (no ResNet-18: a smoke run)."""
    import fastconv as fc
    from fastconv import _C
    from fastconv.bench.models import _batch, fastconv_model, fastconv_step
    rng = np.random.default_rng(0)
    x = rng.random((256, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    modern = fc.models.lenet5((28, 28, 1), 10, variant="modern", classifier_activation=None)
    modern.compile(fc.optimizers.SGD(0.01, momentum=0.9),
                   fc.losses.SparseCategoricalCrossentropy(from_logits=True))
    n = 1024
    a, b = rng.random(n * n, dtype=np.float32), rng.random(n * n, dtype=np.float32)
    c = np.zeros(n * n, np.float32)
    cases = {
        "LeNet-5 modern step b256": lambda: modern.train_on_batch(x, y),
        "LeNet-5 classic step b256": fastconv_step("lenet5", 256, (28, 28, 1), 10),
    }
    if not quick:
        resnet = fastconv_model("resnet18_cifar", (32, 32, 3), 10)
        xr, _ = _batch(64, (32, 32, 3), 10)
        cases["ResNet-18 CIFAR step b64"] = fastconv_step("resnet18_cifar", 64, (32, 32, 3), 10)
        predict = lambda: resnet.predict_on_batch(xr)
        # predict runs an inference plan whose steps hold the _C functions they call, taken
        # when the plan is built (engine/inference.py): op_profile drops the plan after
        # wrapping _C, so the rebuilt one calls the timed wrappers (no hook in the plan, so
        # no cost when not profiling)
        predict.rebuild = lambda: _drop_plans(resnet)
        cases["ResNet-18 CIFAR predict b64"] = predict
    return {
        **cases,
        "sgemm 1024^3 (1 thread)": lambda: _C._sgemm(False, False, n, n, n, 1.0, a, n, b, n, 0.0, c, n, ""),
        # OpenBLAS with the kernels it picks for the level's CPU (fastconv/_loader.py): how
        # much the vector width alone is worth on this machine
        "sgemm 1024^3 OpenBLAS (1 thread)": lambda: _C._sgemm(False, False, n, n, n, 1.0, a, n, b, n, 0.0, c, n,
                                                            "openblas"),
    }


def _drop_plans(model):
    """Forget the model's inference plans: its next predict builds one from _C as it is now."""
    model.__dict__.pop("_inference_plans", None)
    model.__dict__.pop("_inference_last", None)


# The kernels whose work is multiply-adds (GEMM, direct and Winograd convs, dense): their
# speed follows the FMA width. Every other _C call (pooling, activations, BN, softmax,
# optimizer updates, copies) moves memory, and the rest of a step is Python.
FMA_BOUND = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weights", "dense_forward",
             "dense_backward")


def op_profile(fn, steps):
    """ms per call of fn, split by _C kernel: {"total": ..., "ops": {name: ms}}. Every public
    _C function is wrapped with a timer while fn runs `steps` times (the kernels are looked up
    on _C at call time, fastconv/backend.py), then restored. A case that keeps _C functions
    across calls (predict's inference plan) carries `fn.rebuild`, called after the wrapping
    and before an untimed warm call, so that it takes the wrappers, and again at the end."""
    from fastconv import _C
    spent = {}
    saved = {}
    clock = _clock[0]

    def timer(name, f):
        def call(*args, **kwargs):
            t0 = clock()
            try:
                return f(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + clock() - t0
        return call

    fn()  # warm: first-call allocations and plans out of the profile
    for name in dir(_C):
        f = getattr(_C, name)
        if not name.startswith("_") and callable(f) and not isinstance(f, type):
            saved[name] = f
            setattr(_C, name, timer(name, f))
    rebuild = getattr(fn, "rebuild", None)
    try:
        if rebuild is not None:
            rebuild()
            fn()  # the new plan's first run prepares its steps: not part of the profile
            spent.clear()
        t0 = clock()
        for _ in range(steps):
            fn()
        total = clock() - t0
    finally:
        for name, f in saved.items():
            setattr(_C, name, f)
        if rebuild is not None:
            rebuild()  # later calls must not run the wrappers
    return {"total": total / steps * 1e3, "ops": {k: v / steps * 1e3 for k, v in spent.items()}}


def _ceiling(threads):
    """Per-width multiply-add peak of one core (GFLOP/s, _C._fma_peak_gflops) at this level."""
    from fastconv import _C
    if not hasattr(_C, "_fma_peak_widths"):
        return {}
    return {str(bits): _C._fma_peak_gflops(0.3, 10, bits) for bits in _C._fma_peak_widths()}


def worker(threads, repeats, profile_steps, quick=False, clock="wall"):
    import fastconv as fc
    from fastconv import _C
    if clock == "cpu":
        _clock[0] = time.process_time
    fc.set_num_threads(threads)
    peaks = _ceiling(threads)  # before the cases: a quiet core, one thread
    cases = _cases(quick)
    times = {name: _timed(fn, repeats) for name, fn in cases.items()}
    profiles = {}
    if profile_steps:
        profiles = {name: op_profile(fn, profile_steps) for name, fn in cases.items() if "sgemm" not in name}
    level = _C.isa_level() if hasattr(_C, "isa_level") else "native (no levels)"
    print(json.dumps({"level": level, "blas": _C.blas_corename(), "ms": times, "peaks": peaks,
                      "profiles": profiles}))


def _run_worker(folder, level, args, extra_env=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([folder, REPO]))
    env.pop("FASTCONV_ISA", None)
    env.update(extra_env or {})
    if level:
        env["FASTCONV_ISA"] = level
    # this file's worker for every build (by path: a build folder's own benchmarks/ may be
    # older), so all variants time the same cases with the same options
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--profile", str(args.profile), "--clock", args.clock]
    cmd += ["--quick"] if args.quick else []
    proc = subprocess.run(cmd, env=env, cwd="/", capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_isa_levels worker (FASTCONV_ISA={level or '-'}, {folder}) failed:\n"
                           f"{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _levels(folder):
    env = dict(os.environ, PYTHONPATH=folder)
    env.pop("FASTCONV_ISA", None)
    out = subprocess.run([sys.executable, "-c", "from fastconv import _C; "
                          "print(*(_C.isa_levels() if hasattr(_C, 'isa_levels') else ['']))"],
                         env=env, cwd="/", capture_output=True, text=True, check=True).stdout
    return out.split() or [""]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_isa_levels")
    ap.add_argument("--build", action="append", default=[], metavar="NAME=FOLDER",
                    help="a build to compare: a folder holding a fastconv package (repeatable)")
    ap.add_argument("--build-env", action="append", default=[], nargs=2, metavar=("NAME", "VAR=VALUE"),
                    help="an environment variable for build NAME's workers (repeatable), e.g. "
                         "--build w512=. --build-env w512 FASTCONV_GEMM_WIDTH=512")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="timings per case per process")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="also time each case's _C kernels over STEPS calls and split every step "
                         "into multiply-add-bound and other work, with the best ratio to the first "
                         "variant the hardware allows (0: off)")
    ap.add_argument("--levels", nargs="+", metavar="LEVEL",
                    help="only these levels of each multi-level build (e.g. avx512 avx2; default: all it runs)")
    ap.add_argument("--quick", action="store_true", help="LeNet-5 steps and sgemms only (no ResNet-18)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall clock, or the process's CPU time (for --threads 1 on a shared machine: "
                         "time other jobs hold the core is left out)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def this_build():
    """The folder holding the imported fastconv package (a build to hand to --build)."""
    import fastconv
    return os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


def collect(args):
    """Runs every variant's worker round robin -> (variants, samples, heads): variants are
    (name, folder, level), samples[variant] the workers' JSON results (one per round), heads
    the column names ("this avx512")."""
    builds = [b.split("=", 1) for b in args.build] or [["this", this_build()]]
    variants = []
    for name, folder in builds:
        levels = list(reversed(_levels(folder)))
        if args.levels and len(levels) > 1:  # a single-level build (e.g. native) keeps its one level
            levels = [lv for lv in levels if lv in args.levels]
        variants += [(name, folder, level) for level in levels]
    extra = {}
    for name, assignment in args.build_env:
        var, _, value = assignment.partition("=")
        extra.setdefault(name, {})[var] = value
    samples = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            samples[v].append(_run_worker(v[1], v[2], args, extra.get(v[0])))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    heads = [f"{name} {samples[(name, f, lv)][0]['level']}" for name, f, lv in variants]
    return variants, samples, heads


def case_medians(samples, v):
    """{case: median ms over rounds} of one variant."""
    return {case: statistics.median(s["ms"][case] for s in samples[v]) for case in samples[v][0]["ms"]}


def paired_with(so_path, reps=15, quick=False):
    """{case: (ms with this process's _C, ms with the _C at so_path)}: each case of _cases()
    run with the two builds' kernels in ONE process, calls alternating A, B, B, A, 1 thread,
    thread CPU time, medians. A process per build (collect) moved the same step by up to
    1.3x on the shared 2-core host, more than codegen can differ between two builds of one
    commit (stop 38: a "1.32" of the classic LeNet-5 step paired at 0.99-1.02). The functional
    layer asks fastconv.backend for its kernel module on every call, so swapping that module
    swaps the build. Each build gets its own set of cases (same seeds, so the same weights):
    predict's plan keeps the module it was built with (engine/inference.py)."""
    import fastconv as fc
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from ab_two_builds import alternate, load
    backend = sys.modules["fastconv.backend"]  # fastconv.backend is also a function's name
    own, other = backend.kernels(), load(so_path, "paired_other")
    fc.set_num_threads(1)
    other.set_num_threads(1)
    cases = {}
    for k in (own, other):
        backend._cpu_module = k
        try:
            cases[k] = _cases(quick)
        finally:
            backend._cpu_module = own
    n = 1024
    rng = np.random.default_rng(0)
    a, b = rng.random(n * n, dtype=np.float32), rng.random(n * n, dtype=np.float32)
    c = np.zeros(n * n, np.float32)
    out = {}
    for case in cases[own]:
        if case.startswith("sgemm"):
            lib = "openblas" if "OpenBLAS" in case else ""

            def call(k, lib=lib):
                return k._sgemm(False, False, n, n, n, 1.0, a, n, b, n, 0.0, c, n, lib)
        else:
            def call(k, case=case):
                backend._cpu_module = k
                try:
                    return cases[k][case]()
                finally:
                    backend._cpu_module = own
        call(own), call(other)  # warm: plans built, buffers allocated
        ta, tb = alternate(call, own, other, max(5, reps // 3) if case.startswith("ResNet") else reps)
        out[case] = (1e3 * statistics.median(ta), 1e3 * statistics.median(tb))
        print(f"paired {case}: this {out[case][0]:.3f} ms, other {out[case][1]:.3f} ms", file=sys.stderr, flush=True)
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args.threads, args.repeats, args.profile, args.quick, args.clock)
    variants, samples, heads = collect(args)
    cases = list(samples[variants[0]][0]["ms"])
    print(f"threads {args.threads}, {args.rounds} rounds, median ms ({args.clock} clock; ratio to {heads[0]}); "
          "OpenBLAS kernels: " + ", ".join(f"{h}: {samples[v][0]['blas']}" for h, v in zip(heads, variants)))
    print("| case | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 1) + "|")
    for case in cases:
        med = [statistics.median(s["ms"][case] for s in samples[v]) for v in variants]
        cells = [f"{m:.2f}" if i == 0 else f"{m:.2f} ({m / med[0]:.2f})" for i, m in enumerate(med)]
        print(f"| {case} | " + " | ".join(cells) + " |")
    _print_ceiling(variants, samples, heads)
    if args.profile:
        _print_profile(variants, samples, heads)


SGEMM_FLOP = 2 * 1024 ** 3


def _median(values):
    values = list(values)
    return statistics.median(values) if values else float("nan")


def _sgemm_gflops(samples, v, case):
    return SGEMM_FLOP / _median(s["ms"][case] for s in samples[v]) * 1e-6


def _best_sgemm(samples, v):
    return max(_sgemm_gflops(samples, v, c) for c in ("sgemm 1024^3 (1 thread)", "sgemm 1024^3 OpenBLAS (1 thread)"))


def _print_ceiling(variants, samples, heads):
    """The hardware ceiling per level: one core's multiply-add peak at each vector width the
    level runs, and the serial sgemm 1024^3 (selected backend, OpenBLAS) as a fraction of the
    level's widest peak."""
    print("\nHardware ceiling per level (1 thread, GFLOP/s; multiply-add loop, 24 or 12 chains, "
          "_C._fma_peak_gflops; sgemm 1024^3 as % of the level's widest peak):")
    print("| variant | 128-bit | 256-bit | 512-bit | sgemm selected | sgemm OpenBLAS |")
    print("|---|---:|---:|---:|---:|---:|")
    for head, v in zip(heads, variants):
        peaks = {bits: _median(s["peaks"][bits] for s in samples[v])
                 for bits in samples[v][0].get("peaks", {})}
        widest = peaks[max(peaks, key=int)] if peaks else float("nan")
        cells = [f"{peaks[b]:.0f}" if b in peaks else "-" for b in ("128", "256", "512")]
        for case in ("sgemm 1024^3 (1 thread)", "sgemm 1024^3 OpenBLAS (1 thread)"):
            g = _sgemm_gflops(samples, v, case)
            cells.append(f"{g:.0f} ({100 * g / widest:.0f}%)")
        print(f"| {head} | " + " | ".join(cells) + " |")


def profile_split(variants, samples):
    """{(variant, case): (total, multiply-add, other) ms per call}, medians over rounds."""
    split = {}
    for v in variants:
        for case in samples[v][0]["profiles"]:
            rows = [s["profiles"][case] for s in samples[v]]
            fma = _median(sum(ms for op, ms in r["ops"].items() if op in FMA_BOUND) for r in rows)
            total = _median(r["total"] for r in rows)
            split[v, case] = (total, fma, total - fma)
    return split


def hardware_limit(samples, ref, v, ref_split):
    """(sgemm ratio, limit): the best ratio of variant v's step to ref's the hardware allows,
    ref's multiply-add work scaled by the ratio of the two variants' best serial sgemm and the
    rest unchanged; limit None where the step does not split (no _C kernel names seen)."""
    t0, f0, o0 = ref_split
    r = _best_sgemm(samples, ref) / _best_sgemm(samples, v)
    if f0 == 0 or o0 == 0:
        return r, None
    return r, (o0 + r * f0) / t0


def _print_profile(variants, samples, heads):
    """Each profiled step split into multiply-add-bound kernels (FMA_BOUND) and the rest, and
    the best ratio to the first variant the hardware allows: the multiply-add work scaled by
    the ratio of the two variants' best serial sgemm throughput (each level's GEMM at the
    fraction of its own peak it reaches), the rest unchanged."""
    ref = variants[0]
    cases = list(samples[ref][0]["profiles"])
    split = profile_split(variants, samples)
    print(f"\nSteps by kernel class (ms per call, profiled; multiply-add-bound = {', '.join(FMA_BOUND)}; "
          "other = every other kernel and Python). 'limit': the ratio to the first variant if the "
          "multiply-add work ran at the sgemm-throughput ratio of the two levels and the rest did not change.")
    print("| case | variant | total | multiply-add | other | ratio | multiply-add ratio | other ratio | sgemm ratio | limit |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        t0, f0, o0 = split[ref, case]
        for head, v in zip(heads, variants):
            t, f, o = split[v, case]
            if v == ref:
                print(f"| {case} | {head} | {t:.2f} | {f:.2f} | {o:.2f} | | | | | |")
                continue
            r, limit = hardware_limit(samples, ref, v, split[ref, case])
            if limit is None:  # no _C kernel seen, or no multiply-add kernel
                print(f"| {case} | {head} | {t:.2f} | {f:.2f} | {o:.2f} | {t / t0:.2f} | not split | | | |")
                continue
            print(f"| {case} | {head} | {t:.2f} | {f:.2f} | {o:.2f} | {t / t0:.2f} | {f / f0:.2f} | "
                  f"{o / o0:.2f} | {r:.2f} | {limit:.2f} |")
    print("\nPer kernel (ms per step, first round), largest first:")
    for case in cases:
        for head, v in zip(heads, variants):
            ops = samples[v][0]["profiles"][case]["ops"]
            top = sorted(ops.items(), key=lambda kv: -kv[1])[:8]
            print(f"- {case}, {head}: " + ", ".join(f"{k} {ms:.2f}" for k, ms in top))


if __name__ == "__main__":
    main()
