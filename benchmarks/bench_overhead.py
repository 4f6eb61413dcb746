"""Per-call overhead: what fastconv spends outside the kernels, next to PyTorch.

Each row times a call on inputs so small that the kernel's own work is negligible, so the
time is the Python layers around it: argument checks and dispatch (functional), the autograd
node (forward + backward), a Keras layer call, and a whole LeNet-5 training step at batch 1
and 8 (where a step is almost all overhead). Medians of interleaved repeats, microseconds.

    PYTHONPATH=. python benchmarks/bench_overhead.py [--repeats N] [--no-torch]
"""
import argparse
import statistics
import time

import numpy as np


def _per_call_us(fn, calls, repeats):
    fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(runs)


def fastconv_cases():
    import fastconv as fc
    from fastconv import functional as F
    from fastconv.autograd import Tensor, ops
    from fastconv.bench import models as bm
    x = np.ones((1, 4, 4, 1), np.float32)
    w = np.ones((3, 3, 1, 1), np.float32)
    dy = np.ones((1, 4, 4, 1), np.float32)
    tx, tw = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    layer = fc.layers.Conv2D(1, 3, padding="same")
    layer(x)

    def autograd_step():
        ops.conv2d(tx, tw, padding="same").sum().backward()

    return {
        "functional conv2d forward": lambda: F.conv2d(x, w, padding="same"),
        "functional conv2d backward": lambda: F.conv2d_backward(dy, x, w, padding="same"),
        "autograd conv2d forward+backward": autograd_step,
        "Conv2D layer call": lambda: layer(x),
        "LeNet-5 train step b1": bm.fastconv_step("lenet5", 1, (28, 28, 1), 10),
        "LeNet-5 train step b8": bm.fastconv_step("lenet5", 8, (28, 28, 1), 10),
    }


def torch_cases(torch):
    from fastconv.bench import models as bm
    x = torch.ones((1, 1, 4, 4)).to(memory_format=torch.channels_last)
    w = torch.ones((1, 1, 3, 3))
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    layer = torch.nn.Conv2d(1, 1, 3, padding=1)

    def autograd_step():
        torch.nn.functional.conv2d(xg, wg, padding=1).sum().backward()

    def no_grad_forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(x, w, padding=1)

    return {
        "functional conv2d forward": no_grad_forward,
        "autograd conv2d forward+backward": autograd_step,
        "Conv2D layer call": lambda: layer(x),
        "LeNet-5 train step b1": bm.torch_step(torch, "lenet5", 1, (28, 28, 1), 10),
        "LeNet-5 train step b8": bm.torch_step(torch, "lenet5", 8, (28, 28, 1), 10),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--calls", type=int, default=200, help="calls per timed repeat")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-torch", action="store_true")
    a = p.parse_args(argv)
    import fastconv
    fastconv.set_num_threads(a.threads)
    rows = {name: {"fastconv": _per_call_us(fn, a.calls, a.repeats)} for name, fn in fastconv_cases().items()}
    torch = None
    if not a.no_torch:
        try:
            import torch
            torch.set_num_threads(a.threads)
        except ImportError:
            torch = None
    if torch is not None:
        for name, fn in torch_cases(torch).items():
            rows[name]["torch"] = _per_call_us(fn, a.calls, a.repeats)
    print(f"threads {a.threads}, median us per call over {a.repeats} repeats of {a.calls} calls")
    print("| case | fastconv us | torch us | ratio |\n|---|---|---|---|")
    for name, r in rows.items():
        ours, theirs = r["fastconv"], r.get("torch")
        peer = "- | -" if theirs is None else f"{theirs:.1f} | {ours / theirs:.2f}"
        print(f"| {name} | {ours:.1f} | {peer} |")
    return rows


if __name__ == "__main__":
    main()
