"""Team or one thread for an inference plan: both sides of engine/inference.py's rule.

A plan runs on one thread where its steps average fewer than inference._TEAM_MIN_WORK
multiply-adds (output elements for memory-bound steps), on the team otherwise; the choice is
fixed when the plan is built, so a model's predictions do not change from call to call. This
measures, for issue 18 item 4's models at several batch sizes, the plan's work per step and
its predict time with the choice forced each way, so the threshold can be checked on a machine:

    PYTHONPATH=. python benchmarks/bench_plan_threads.py --threads 2 --rounds 7

Wall clock, 2 threads by default. Each round runs a block of `--calls` back-to-back calls
per side after a `--pause` idle (the block's first call is the "cold" one: on a VM whose idle
vCPUs halt, the team's first regions wait for a worker to wake), the sides alternating;
medians over rounds of the cold call and of the block's other (warm) calls.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages


def _cases(quick):
    from fastconv.models import zoo
    """(label, constructor, input shape, largest batch): LeNet-5 crosses the threshold between
    batch 32 and 64; the others are far above it from batch 1, so they stop at 8."""
    out = [("LeNet-5", zoo.lenet5, (28, 28, 1), None),
           ("ResNet-18 CIFAR", lambda: zoo.resnet18((32, 32, 3), classes=10, stem="cifar"), (32, 32, 3), 8)]
    if not quick:
        out += [("MobileNet 224", zoo.mobilenet, (224, 224, 3), 8), ("ResNet-50 224", zoo.resnet50, (224, 224, 3), 8)]
    return out


def measure(threads, batches, rounds, calls, pause, quick=False):
    import fastconv
    from fastconv.engine import inference
    fastconv.set_num_threads(threads)
    rows = []
    for name, build, shape, largest in _cases(quick):
        fastconv.set_seed(0)
        model = build()
        for batch in [b for b in batches if largest is None or b <= largest]:
            x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
            model.predict_on_batch(x)
            plan = model._inference_last[2]
            rule = plan.one_thread
            per_step = plan.work / len(plan.steps)
            times = {True: ([], []), False: ([], [])}
            outs = {}
            for r in range(rounds):
                for one in ((True, False) if r % 2 else (False, True)):
                    plan.one_thread = one
                    time.sleep(pause)
                    block = []
                    for _ in range(calls):
                        t = time.perf_counter()
                        outs[one] = model.predict_on_batch(x)
                        block.append(time.perf_counter() - t)
                    times[one][0].append(block[0])
                    times[one][1].extend(block[1:])
            plan.one_thread = rule
            med = {k: (1e3 * float(np.median(c)), 1e3 * float(np.median(w))) for k, (c, w) in times.items()}
            rows.append(dict(case=f"{name} b{batch}", work_per_step=per_step, rule="one" if rule else "team",
                             team_cold=med[False][0], team_warm=med[False][1],
                             one_cold=med[True][0], one_warm=med[True][1],
                             diff=float(np.abs(outs[True] - outs[False]).max())))
            print(rows[-1], flush=True)
    return rows


def report(rows, args):
    from fastconv.engine import inference
    from fastconv.bench.harness import cpu_model
    lines = [f"Machine: {cpu_model()}, {os.cpu_count()} cores; threads={args.threads}; rounds={args.rounds}, "
             f"blocks of {args.calls} calls after {args.pause * 1e3:.0f} ms idle; load average "
             f"{os.getloadavg()[0]:.1f}; one thread below {inference._TEAM_MIN_WORK:.3g} work per step", "",
             "| case | work / step | rule | team cold ms | one cold ms | team warm ms | one warm ms | "
             "faster warm | rule's cost warm | max abs diff team/one |",
             "|---|---:|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        faster = "one" if r["one_warm"] < r["team_warm"] else "team"
        chosen, other = ((r["one_warm"], r["team_warm"]) if r["rule"] == "one" else (r["team_warm"], r["one_warm"]))
        lines.append(f"| {r['case']} | {r['work_per_step']:.3g} | {r['rule']} | {r['team_cold']:.3f} | "
                     f"{r['one_cold']:.3f} | {r['team_warm']:.3f} | {r['one_warm']:.3f} | {faster} | "
                     f"{chosen / min(chosen, other):.2f} | {r['diff']:.1e} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--pause", type=float, default=0.2, help="idle seconds before each block")
    ap.add_argument("--quick", action="store_true", help="LeNet-5 and ResNet-18 CIFAR only")
    args = ap.parse_args(argv)
    print(report(measure(args.threads, args.batches, args.rounds, args.calls, args.pause, args.quick), args))


if __name__ == "__main__":
    main()
