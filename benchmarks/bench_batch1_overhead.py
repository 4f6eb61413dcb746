"""Per-call overhead at batch 1 and the LeNet-5 training step, next to onnxruntime / PyTorch in
the same process (issue 18 items 4 and 1).

predict: LeNet-5 (classic) on one image: `model.predict_on_batch(x)`, `model.predict(x,
verbose=0)` and onnxruntime's `session.run` on the exported model, first each back to back
(warm caches; medians of 7 runs of --calls calls), then single calls interleaved (--rounds
rounds; what benchmarks/bench_onnx.py times, with colder caches). Microseconds.

train: the LeNet-5 classic and modern steps at batch 256 (benchmarks/bench_small_channels.py's
models), fastconv and PyTorch alternating, --rounds rounds of two steps; medians in ms and the
ratio fastconv / PyTorch (issue 18 item 1's target: <= 0.6).

At 1 thread both use the process CPU clock (robust to other jobs on a shared machine), else
the wall clock.

    PYTHONPATH=. python benchmarks/bench_batch1_overhead.py [--threads 1] [--calls 2000] [--rounds 500] predict
    PYTHONPATH=. python benchmarks/bench_batch1_overhead.py [--threads 1] [--rounds 15] train
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages


def predict(args, clock):
    import onnxruntime as ort

    import fastconv
    from fastconv.models import zoo
    fastconv.set_seed(0)
    model = zoo.lenet5()
    x = np.random.default_rng(1).standard_normal((1, 28, 28, 1)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "lenet5.onnx")
        fastconv.onnx.export(model, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    runs = {"predict_on_batch": lambda: model.predict_on_batch(x), "predict": lambda: model.predict(x, verbose=0),
            "onnxruntime": lambda: session.run(None, {feed: x})}
    diff = np.abs(np.asarray(model.predict(x, verbose=0)) - session.run(None, {feed: x})[0]).max()
    for fn in runs.values():
        fn()
    print(f"LeNet-5 b1, {args.threads} thread(s), max abs diff to onnxruntime {diff:.1e}, us")
    for name, fn in runs.items():
        per = []
        for _ in range(7):
            t0 = clock()
            for _ in range(args.calls):
                fn()
            per.append((clock() - t0) / args.calls * 1e6)
        print(f"  back to back  {name:17s} {statistics.median(per):7.1f}")
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    for name, v in times.items():
        print(f"  interleaved   {name:17s} {statistics.median(v) * 1e6:7.1f}")


def train(args, clock):
    import torch

    from benchmarks.bench_small_channels import fastconv_cases, torch_cases
    torch.set_num_threads(args.threads)
    ours, theirs = fastconv_cases(256), torch_cases(torch, 256)
    for name in ("LeNet-5 classic step", "LeNet-5 modern step"):
        f, g = ours[name], theirs[name]
        for fn in (f, g, f, g):
            fn()
        a, b = [], []
        for _ in range(args.rounds):
            for fn, out in ((f, a), (g, b)):
                t0 = clock()
                fn()
                fn()
                out.append((clock() - t0) / 2)
        ma, mb = statistics.median(a) * 1e3, statistics.median(b) * 1e3
        print(f"{name}: fastconv {ma:.2f} ms, PyTorch {mb:.2f} ms, ratio {ma / mb:.3f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["predict", "train"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=None, help="default 500 (predict), 15 (train)")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 500 if args.what == "predict" else 15
    import fastconv
    fastconv.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    (predict if args.what == "predict" else train)(args, clock)


if __name__ == "__main__":
    main()
