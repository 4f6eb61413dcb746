"""Chosen conv layers of the benchmark set: fastconv's three passes apart, and forward+backward
side by side with PyTorch (channels_last) and TensorFlow, interleaved, medians of wall and
process CPU time.

    PYTHONPATH=. python -m benchmarks.bench_layer_passes [--layers "a,b"] [--repeats 7]
        [--threads 2] [--no-peers]

Per layer: one line per pass (forward, backward data, backward weights) with fastconv's
median wall time, its CPU time (less sensitive to other jobs on a shared machine) and
GFLOP/s; then the full step (ops.fastconv_conv and the peers' equivalents) for each
framework, repeats interleaved across frameworks as in `python -m benchmarks`.
"""
import argparse
import statistics
import time

import numpy as np

from fastconv.bench import harness, ops, specs

DEFAULT_LAYERS = "stem 7x7 s2,56x56 64->64 k3,56x56 64->128 k3 s2,28x28 256->64 k1"


def pass_times(spec, repeats):
    from fastconv import functional as F
    from fastconv.backend import kernels
    _, n, h, w, cin, cout, k, s, padding, groups = spec
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((k, k, cin // groups, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    strides, pads, dil = F.conv._conv_args(x, wt, s, padding, 1, groups)
    kern = kernels()
    y = kern.conv2d_forward(x, wt, b, strides, pads, dil, groups)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    passes = {
        "forward": lambda: kern.conv2d_forward(x, wt, b, strides, pads, dil, groups),
        "backward_data": lambda: kern.conv2d_backward_data(dy, wt, x.shape, strides, pads, dil, groups),
        "backward_weights": lambda: kern.conv2d_backward_weights(dy, x, wt.shape, strides, pads, dil, groups, True),
    }
    wall = {p: [] for p in passes}
    cpu = {p: [] for p in passes}
    for fn in passes.values():
        fn()
    for _ in range(repeats):
        for p, fn in passes.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[p].append(time.perf_counter() - t0)
            cpu[p].append(time.process_time() - c0)
    return {p: (statistics.median(wall[p]), statistics.median(cpu[p])) for p in passes}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_layer_passes")
    p.add_argument("--layers", default=DEFAULT_LAYERS, help="comma-separated names from specs.CONV_LAYERS")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-peers", action="store_true")
    args = p.parse_args(argv)
    import fastconv
    from fastconv.bench.run import op_cases
    peers = {} if args.no_peers else harness.load_peers({"torch", "tensorflow"})
    harness.set_threads(args.threads, peers)
    wanted = [name.strip() for name in args.layers.split(",")]
    chosen = [s for s in specs.CONV_LAYERS if s[0] in wanted]
    print(f"threads={args.threads} repeats={args.repeats} cpu={harness.cpu_model()} "
          f"fastconv={fastconv.__file__}")
    for spec in chosen:
        flop = ops.conv_flops(spec)
        algos = fastconv.functional.conv2d_algorithm(
            (spec[1], spec[2], spec[3], spec[4]), (spec[6], spec[6], spec[4] // spec[9], spec[5]),
            spec[7], spec[8], 1, spec[9])
        for name, (wall, cpu) in pass_times(spec, args.repeats).items():
            print(f"  {spec[0]:<22} {name:<17} {wall * 1e3:8.2f} ms  cpu {cpu * 1e3:8.2f} ms  "
                  f"{flop / wall / 1e9:6.0f} GFLOP/s  ({algos[name]})", flush=True)
        wall, cpu = step_times(op_cases("conv", spec, ["cpu"], peers), args.repeats)
        for label, times in (("step wall", wall), ("step cpu ", cpu)):
            med = {fw: 1e3 * statistics.median(t) for fw, t in times.items()}
            ratios = "  ".join(f"fastconv/{fw} {med['fastconv'] / ms:.2f}" for fw, ms in med.items() if fw != "fastconv")
            print(f"  {spec[0]:<22} {label}  " + "  ".join(f"{fw} {ms:8.2f} ms" for fw, ms in med.items())
                  + "  " + ratios, flush=True)


def step_times(cases, repeats):
    """As harness.time_interleaved, plus each call's process CPU time (all its threads): on a
    machine shared with other jobs, CPU time shows the work done, wall time what a user waits."""
    for fn in cases.values():
        fn()
    wall = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


if __name__ == "__main__":
    main()
