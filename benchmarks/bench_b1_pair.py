"""Batch-1 predict at 1 and 2 threads, interleaved call by call: wall, caller CPU, process CPU.

On a shared 2-core machine the wall clock of a 2-thread call is set by the load; the CPU
clocks say where the work went. Per model: `predict_on_batch` with the plan's team-or-one
choice off (so the 2-thread calls really run the team), 1 and 2 threads alternating call by
call, medians over --calls calls of wall time, the calling thread's CPU time
(time.thread_time: the work it did itself plus any spinning at barriers; on an idle core
pair this is what a call's latency comes down to) and the process's CPU time (all threads,
spinning included). ms. With --trees: a fresh process per tree, trees alternating over
--rounds rounds (a before/after comparison on one machine), one JSON line per run.

--steps: instead, every step of the model's inference plan timed alone (wall clock), whole
passes at 1 and 2 threads alternating, medians of --calls passes: which layers fail to scale.

    PYTHONPATH=. python benchmarks/bench_b1_pair.py [--models resnet18 mobilenet resnet50]
        [--calls 15] [--rounds 3] [--trees /tmp/before /work/tree] [--steps]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MODELS = {  # name: (constructor source, input shape)
    "resnet18": ("zoo.resnet18((32, 32, 3), classes=10, stem='cifar')", (1, 32, 32, 3)),
    "mobilenet": ("zoo.mobilenet()", (1, 224, 224, 3)),
    "resnet50": ("zoo.resnet50()", (1, 224, 224, 3)),
    "resnet18_b64": ("zoo.resnet18((32, 32, 3), classes=10, stem='cifar')", (64, 32, 32, 3)),
    "lenet": ("zoo.lenet5()", (1, 28, 28, 1)),
    "lenet_b64": ("zoo.lenet5()", (64, 28, 28, 1)),
    "mobilenet_b64": ("zoo.mobilenet()", (64, 224, 224, 3)),
}


def measure(name, calls):
    import numpy as np

    import fastconv
    from fastconv.engine import inference
    from fastconv.models import zoo
    inference._TEAM_MIN_WORK = 0  # every plan takes the team on 2-thread calls
    fastconv.set_seed(0)
    model = eval(MODELS[name][0], {"zoo": zoo})
    x = np.random.default_rng(0).standard_normal(MODELS[name][1]).astype(np.float32)
    for threads in (1, 2, 1, 2):
        fastconv.set_num_threads(threads)
        model.predict_on_batch(x)
    runs = {1: [], 2: []}
    for _ in range(calls):
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
            model.predict_on_batch(x)
            runs[threads].append((time.perf_counter() - t0, time.thread_time() - c0, time.process_time() - p0))
    out = {"model": name, "load": round(os.getloadavg()[0], 1)}
    for threads, v in runs.items():
        out[f"{threads}t"] = {k: round(statistics.median(c) * 1e3, 3) for k, c in zip(("wall", "caller_cpu", "process_cpu"), zip(*v))}
    return out


def steps(name, calls):
    """Per-step wall ms of the plan at 1 and 2 threads (a table)."""
    import numpy as np

    import fastconv
    from fastconv.models import zoo
    fastconv.set_seed(0)
    model = eval(MODELS[name][0], {"zoo": zoo})
    x = np.random.default_rng(0).standard_normal(MODELS[name][1]).astype(np.float32)
    model.predict_on_batch(x)
    plan = model._inference_last[2]
    fns = [s for s, _ in plan.steps]

    def one_pass():
        regs = [None] * plan.slots
        regs[plan.inputs[0]] = x
        times = []
        for f in fns:
            t0 = time.perf_counter()
            f(regs)
            times.append(time.perf_counter() - t0)
        return times
    runs = {1: [], 2: []}
    for _ in range(calls):
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            one_pass()  # warm at this thread count
            runs[threads].append(one_pass())
    med = {t: [statistics.median(c) * 1e3 for c in zip(*v)] for t, v in runs.items()}
    print(f"{name}, load {os.getloadavg()[0]:.1f}, wall ms, medians of {calls}")
    print("| step | 1 thread | 2 threads |\n|---|---:|---:|")
    for n, a, b in zip(plan.describe(), med[1], med[2]):
        print(f"| {n} | {a:.3f} | {b:.3f} |")
    print(f"| total | {sum(med[1]):.3f} | {sum(med[2]):.3f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "mobilenet", "resnet50"], choices=list(MODELS))
    ap.add_argument("--calls", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trees", nargs="+")
    ap.add_argument("--steps", action="store_true", help="per-step times instead (this process)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model in this process
    args = ap.parse_args()
    if args.steps:
        for name in args.models:
            steps(name, args.calls)
        return
    if args.one:
        print(json.dumps(measure(args.one, args.calls)))
        return
    if not args.trees:
        for name in args.models:
            print(json.dumps(measure(name, args.calls)))
        return
    for name in args.models:
        for _ in range(args.rounds):
            for tree in args.trees:
                env = dict(os.environ, PYTHONPATH=tree)
                line = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", name, "--calls", str(args.calls)],
                                      env=env, cwd=tree, check=True, capture_output=True, text=True).stdout.strip()
                print(tree, line, flush=True)


if __name__ == "__main__":
    main()
