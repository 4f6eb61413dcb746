"""Paired timing of two builds of fastconv._C on LeNet-5 training steps and predicts, in ONE process.

Each build's .so is loaded under its own module name (benchmarks/ab_two_builds.py); each gets
its own model (same seed, same weights, same batch), and fastconv's kernel lookup
(backend._cpu_module, which functional calls and the optimizers read) is pointed at that
build for its model's steps. Steps alternate A B B A / B A A B, so both builds see the same
load. Both builds share one libgomp, so one OpenMP thread pool and one thread knob.

    PYTHONPATH=. python benchmarks/ab_team_fit.py A.so B.so --threads 2 --batches 16 64 256 \
        [--reps 21] [--clock wall|cpu] [--what fit predict] [--variant classic]

--clock wall (default): perf_counter per step, what a user waits (at 2 threads thread CPU time
would count the master's spinning at barriers and miss the worker's share). cpu: the calling
thread's CPU time (robust to other processes; use at 1 thread).
predict: predict_on_batch with the inference plan forced onto the team (plan.one_thread False,
as bench_plan_threads.py's "team" column), so the kernels' own thread choices are what differs.
Prints per case each build's median and minimum (ms) and B / A of the medians.
"""
import argparse
import importlib
import os
import statistics
import sys
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages
from benchmarks.ab_two_builds import load  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--what", nargs="+", default=["fit"], choices=["fit", "predict"])
    ap.add_argument("--variant", default="classic", choices=["classic", "modern"])
    args = ap.parse_args(argv)
    builds = {"A": load(args.a, "a"), "B": load(args.b, "b")}
    import fastconv as fc
    backend = importlib.import_module("fastconv.backend")
    from fastconv.engine import inference
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    fc.set_num_threads(args.threads)
    for mod in builds.values():
        mod.set_num_threads(args.threads)
    print(f"threads {args.threads}, clock {args.clock}, load average {os.getloadavg()[0]:.1f}", flush=True)
    for what in args.what:
        for batch in args.batches:
            rng = np.random.default_rng(0)
            x = rng.random((batch, 28, 28, 1), dtype=np.float32)
            y = rng.integers(0, 10, batch)
            calls = {}
            for tag, mod in builds.items():
                fc.set_seed(0)
                model = fc.models.lenet5((28, 28, 1), 10, variant=args.variant, classifier_activation=None)
                backend._cpu_module = mod
                if what == "fit":
                    model.compile(fc.optimizers.SGD(0.01, momentum=0.9),
                                  fc.losses.SparseCategoricalCrossentropy(from_logits=True))
                    calls[tag] = (mod, lambda model=model: model.train_on_batch(x, y))
                else:
                    original = inference.kernels_for
                    inference.kernels_for = lambda b, mod=mod: mod
                    try:
                        model.predict_on_batch(x)
                    finally:
                        inference.kernels_for = original
                    model._inference_last[2].one_thread = False
                    calls[tag] = (mod, lambda model=model: model.predict_on_batch(x))
                for _ in range(3):
                    calls[tag][1]()
            times = {"A": [], "B": []}
            for r in range(args.reps):
                for tag in ("A", "B", "B", "A") if r % 2 == 0 else ("B", "A", "A", "B"):
                    mod, fn = calls[tag]
                    backend._cpu_module = mod
                    t = clock()
                    fn()
                    times[tag].append(clock() - t)
            ma, mb = statistics.median(times["A"]), statistics.median(times["B"])
            print(f"LeNet-5 {args.variant} {what} b{batch} {args.threads}t: A {1e3 * ma:.3f} B {1e3 * mb:.3f} ms, "
                  f"B/A {mb / ma:.3f} (minima {1e3 * min(times['A']):.3f} {1e3 * min(times['B']):.3f})", flush=True)
    backend._cpu_module = None


if __name__ == "__main__":
    main()
