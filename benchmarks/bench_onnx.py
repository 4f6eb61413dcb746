"""fastconv's predict next to onnxruntime running the same model exported by fastconv.onnx.

Cases: LeNet-5 (28x28x1) and ResNet-18 with the CIFAR stem (32x32x3, 10 classes), at batch 1
and 64. fastconv is timed as `model.predict_on_batch(x)` (the graph call, no batching loop),
onnxruntime as `session.run` on the exported file; both on the same number of threads
(intra-op, one inter-op). Interleaved repeats (harness.time_interleaved); medians and the
ratio onnxruntime / fastconv (> 1: fastconv faster). Also checks the two outputs agree.

    PYTHONPATH=. python benchmarks/bench_onnx.py [--threads N] [--repeats N] [--quick]
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages

from benchmarks.harness import machine_info, set_threads, summarize, time_interleaved  # noqa: E402


def cases(quick):
    from fastconv.models import zoo
    out = [("LeNet-5", zoo.lenet5, (28, 28, 1))]
    if not quick:
        out.append(("ResNet-18 CIFAR", lambda: zoo.resnet18((32, 32, 3), classes=10, stem="cifar"), (32, 32, 3)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--quick", action="store_true", help="LeNet only, for a smoke run")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    import fastconv
    set_threads(args.threads, {})
    fastconv.set_seed(0)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, make, shape in cases(args.quick):
            model = make()
            path = os.path.join(folder, "model.onnx")
            fastconv.onnx.export(model, path)
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            feed = session.get_inputs()[0].name
            for batch in args.batches:
                x = np.random.default_rng(batch).standard_normal((batch,) + shape).astype(np.float32)
                diff = np.max(np.abs(session.run(None, {feed: x})[0] - np.asarray(model.predict_on_batch(x))))
                times = time_interleaved({"fastconv": lambda: model.predict_on_batch(x),
                                          "onnxruntime": lambda: session.run(None, {feed: x})}, args.repeats)
                fc, rt = summarize(times["fastconv"]), summarize(times["onnxruntime"])
                rows.append({"case": f"{name} b{batch}", "fastconv_ms": fc["median_ms"],
                             "onnxruntime_ms": rt["median_ms"], "ratio": rt["median_ms"] / fc["median_ms"],
                             "max_abs_diff": float(diff)})
    info = machine_info(args.threads, {"onnxruntime": ort})
    print(f"machine: {info}")
    print(f"medians of {args.repeats} interleaved repeats, {args.threads} thread(s)")
    print("| case | fastconv ms | onnxruntime ms | ort/fastconv | max abs diff |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['fastconv_ms']:.3f} | {r['onnxruntime_ms']:.3f} | {r['ratio']:.2f} | "
              f"{r['max_abs_diff']:.1e} |")
    return rows


if __name__ == "__main__":
    main()
