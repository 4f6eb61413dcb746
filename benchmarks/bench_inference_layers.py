"""Where predict's time goes, step by step, next to onnxruntime's per-node times.

Times every step of a model's inference plan (engine/inference.py) on its own (thread CPU
time, median over repeats of the whole plan) and reads onnxruntime's profile of the same
network exported by fastconv.onnx (kernel time per node, median over the same number of
runs). Prints one row per plan step with the onnxruntime nodes that do the same work
(matched by the layer names the exporter gives its nodes), then the totals.

    PYTHONPATH=. python benchmarks/bench_inference_layers.py --model ResNet-18 [--batch 1]
        [--threads 1] [--repeats 15] [--top 25] [--clock cpu|wall]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages

from benchmarks.bench_onnx import cases  # noqa: E402
from fastconv.bench.harness import machine_info, set_threads  # noqa: E402


def plan_step_times(model, x, repeats, clock=time.thread_time):
    """[(step name, median ms)] over `repeats` runs of the plan, each step timed alone
    (thread CPU time by default: one thread's work, whatever else runs on the machine)."""
    from fastconv.engine import inference
    model.predict_on_batch(x)
    plan = list(model._inference_plans.values())[-1]
    names = plan.describe(layer_names=True)
    samples = [[] for _ in names]
    for _ in range(repeats):
        regs = [None] * plan.slots
        for s, a in zip(plan.inputs, inference._input_arrays(model, x)):
            regs[s] = a
        for n, (step, dead) in enumerate(plan.steps):
            t = clock()
            step(regs)
            samples[n].append(clock() - t)
            for s in dead:
                regs[s] = None
    return [(name, 1e3 * float(np.median(v))) for name, v in zip(names, samples)]


def ort_node_times(path, x, threads, repeats):
    """{node name: median kernel ms} from onnxruntime's profiler over `repeats` runs."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(os.path.dirname(path), "ort_profile")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    for _ in range(repeats + 1):
        session.run(None, {feed: x})
    with open(session.end_profiling()) as f:
        events = json.load(f)
    per_node = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node.setdefault(e["name"][:-len("_kernel_time")], []).append(e["dur"] / 1e3)
    return {k: float(np.median(v[1:] if len(v) > 1 else v)) for k, v in per_node.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ResNet-18", help="label prefix from bench_onnx's cases")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--top", type=int, default=25, help="rows shown (the slowest steps)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="per-step clock: the calling thread's CPU time (default; 1 thread) or "
                             "wall time (several threads: a team's work is not the caller's CPU time)")
    args = parser.parse_args(argv)
    import fastconv
    set_threads(args.threads, {})
    fastconv.set_seed(0)
    label, make, shape, _, _ = next(c for c in cases(False) if c[0].lower().startswith(args.model.lower()))
    model = make()
    x = np.random.default_rng(0).standard_normal((args.batch,) + shape).astype(np.float32)
    steps = plan_step_times(model, x, args.repeats,
                            time.thread_time if args.clock == "cpu" else time.perf_counter)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.onnx")
        fastconv.onnx.export(model, path)
        nodes = ort_node_times(path, x, args.threads, args.repeats)
    used = set()
    rows = []
    for name, ms in steps:
        layer_names = [p for p in name.split(" + ") if p not in ("pad", "relu", "relu6", "add")]
        matched = [n for n in nodes if n not in used and any(n.split("/")[0] == ln for ln in layer_names)]
        used.update(matched)
        rows.append((name, ms, sum(nodes[n] for n in matched), matched))
    print(f"machine: {machine_info(args.threads, {})}")
    print(f"{label} batch {args.batch}, {args.threads} thread(s), medians of {args.repeats}, ms")
    print("| plan step | fastconv ms | onnxruntime ms (matched nodes) | nodes |")
    print("|---|---:|---:|---|")
    for name, ms, ort_ms, matched in sorted(rows, key=lambda r: -r[1])[:args.top]:
        print(f"| {name} | {ms:.3f} | {ort_ms:.3f} | {', '.join(matched)[:60]} |")
    unmatched = sum(v for k, v in nodes.items() if k not in used)
    print(f"total: fastconv steps {sum(r[1] for r in rows):.2f} ms, onnxruntime nodes "
          f"{sum(nodes.values()):.2f} ms ({unmatched:.2f} ms in nodes not matched to a step)")
    return rows


if __name__ == "__main__":
    main()
