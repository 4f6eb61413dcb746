"""Batch-1 predict after an idle pause, 1 and 2 threads (issue 18 item 4).

A 2-thread `predict_on_batch` that follows a pause can be far slower than the same call in a
loop: on a 2-vCPU VM whose idle vCPUs halt (cpuidle haltpoll) the OpenMP worker has gone to
sleep and every parallel region of the predict waits for it (ResNet-18 CIFAR b1: 3.6 ms warm,
13.2 ms after 50 ms idle, 5.6 ms on 1 thread). Per model and thread count: the median of
--calls calls back to back ("hot") and of --calls calls each preceded by a --pause second
sleep ("after pause"), after 3 warm-up calls. ms, wall clock.

--paired P1 P2 ...: one process, every variant interleaved call by call after each pause P
(seconds, 0: hot, the call right after another): 1 thread, 2 threads without the team hold
(inference._HOLD_TEAM False), 2 threads with it (the team-or-one choice off in both, so each
shows its own effect), and the default (hold setting and choice as shipped). Medians of --calls calls, and
the load. A paired comparison stays meaningful on a shared machine.

--trees A B ...: run each case in a fresh process per checkout (PYTHONPATH=tree), the trees
alternating for --rounds rounds, and report the median over rounds per tree (a before/after
comparison on one machine). Without --trees: this process's fastconv, one round.

    PYTHONPATH=. python benchmarks/bench_b1_idle.py [--models resnet18 mobilenet resnet50 resnet18_b64]
        [--threads 1 2] [--pause 0.05] [--calls 15] [--rounds 3] [--trees /tmp/before /work/tree]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

MODELS = {  # name: (constructor source, input shape)
    "resnet18": ("zoo.resnet18((32, 32, 3), classes=10, stem='cifar')", (1, 32, 32, 3)),
    "mobilenet": ("zoo.mobilenet()", (1, 224, 224, 3)),
    "resnet50": ("zoo.resnet50()", (1, 224, 224, 3)),
    "resnet18_b64": ("zoo.resnet18((32, 32, 3), classes=10, stem='cifar')", (64, 32, 32, 3)),
    "lenet": ("zoo.lenet5()", (1, 28, 28, 1)),
    "lenet_b64": ("zoo.lenet5()", (64, 28, 28, 1)),
}


def paired(name, pauses, calls):
    """{pause: {variant: median ms}} for one model, variants interleaved call by call."""
    import fastconv
    from fastconv.engine import inference
    from fastconv.models import zoo  # noqa: F401 (used by the constructor source)
    x = np.random.default_rng(0).standard_normal(MODELS[name][1]).astype(np.float32)
    hold, rule = inference._HOLD_TEAM, inference._TEAM_MIN_WORK

    def variant(threads, hold_team, choose):
        fastconv.set_seed(0)
        model = eval(MODELS[name][0], {"zoo": zoo})  # a model (and plan, with its own run record) per variant

        def run():
            fastconv.set_num_threads(threads)
            inference._HOLD_TEAM = hold_team
            inference._TEAM_MIN_WORK = rule if choose else 0  # 0: the plan (built by the first call) takes the team
            try:
                t0 = time.perf_counter()
                model.predict_on_batch(x)
                return time.perf_counter() - t0
            finally:
                inference._HOLD_TEAM, inference._TEAM_MIN_WORK = hold, rule
        return run
    variants = {"1 thread": variant(1, False, False), "2 no hold": variant(2, False, False),
                "2 hold": variant(2, True, False), "2 default": variant(2, hold, True)}
    for run in variants.values():
        for _ in range(3):
            run()
    out = {}
    for pause in pauses:
        times = {k: [] for k in variants}
        for _ in range(calls):
            for k, run in variants.items():
                if pause:
                    time.sleep(pause)
                else:
                    run()  # hot: right after a call of the same variant
                times[k].append(run())
        out[pause] = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    fastconv.set_num_threads(2)
    return out


def measure(name, threads, pause, calls):
    """{'hot': ms, 'pause': ms} for one model in this process."""
    import fastconv
    from fastconv.models import zoo  # noqa: F401 (used by the constructor source)
    fastconv.set_seed(0)
    model = eval(MODELS[name][0])
    x = np.random.default_rng(0).standard_normal(MODELS[name][1]).astype(np.float32)
    fastconv.set_num_threads(threads)
    out = {}
    for label, sleep in (("hot", 0.0), ("pause", pause)):
        for _ in range(3):
            model.predict_on_batch(x)
        times = []
        for _ in range(calls):
            if sleep:
                time.sleep(sleep)
            t0 = time.perf_counter()
            model.predict_on_batch(x)
            times.append(time.perf_counter() - t0)
        out[label] = statistics.median(times) * 1e3
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet18", "mobilenet", "resnet50", "resnet18_b64"],
                    choices=sorted(MODELS))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--pause", type=float, default=0.05)
    ap.add_argument("--calls", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trees", nargs="+")
    ap.add_argument("--paired", nargs="+", type=float, metavar="PAUSE")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # child: MODEL THREADS
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.pause, args.calls)))
        return
    if args.paired:
        print("| model | pause ms | load | 1 thread | 2, no hold | 2, hold | 2, default | no hold / hold |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in args.models:
            load = os.getloadavg()[0]
            for pause, r in paired(name, args.paired, args.calls).items():
                v = list(r.values())
                print(f"| {name} | {pause * 1e3:g} | {load:.1f} | " + " | ".join(f"{t:.2f}" for t in v)
                      + f" | {v[1] / v[2]:.2f} |", flush=True)
        return
    trees = args.trees or [None]
    results = {}  # (model, threads, tree) -> {'hot': [...], 'pause': [...]}
    for _ in range(args.rounds if args.trees else 1):
        for name in args.models:
            for threads in args.threads:
                for tree in trees:
                    if tree is None:
                        r = measure(name, threads, args.pause, args.calls)
                    else:
                        env = dict(os.environ, PYTHONPATH=tree)
                        cmd = [sys.executable, os.path.abspath(__file__), "--one", name, str(threads),
                               "--pause", str(args.pause), "--calls", str(args.calls)]
                        r = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                                      text=True).stdout.strip().splitlines()[-1])
                    slot = results.setdefault((name, threads, tree), {"hot": [], "pause": []})
                    for k in slot:
                        slot[k].append(r[k])
    print(f"| model | threads | tree | hot ms | after {args.pause * 1e3:g} ms pause ms |")
    print("|---|---:|---|---:|---:|")
    for (name, threads, tree), r in results.items():
        print(f"| {name} | {threads} | {tree or 'this'} | {statistics.median(r['hot']):.2f} "
              f"| {statistics.median(r['pause']):.2f} |")


if __name__ == "__main__":
    main()
