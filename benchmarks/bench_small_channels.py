"""LeNet-5 training steps (ReLU + max-pool 'modern', and the classic sigmoid + average-pool
one of benchmarks/models.py) and their few-channel max- and average-pool kernels,
fastconv beside PyTorch (channels_last) in one process, one thread by default.

    PYTHONPATH=<repo> <python with torch> -m benchmarks.bench_small_channels [--threads 1] [--repeats 7]

Prints medians and minima (ms; the minimum is the steadier figure on a loaded machine) of --repeats timings, each the mean of several calls, and the ratio
fastconv / PyTorch (< 1: fastconv faster). Without torch only fastconv's figures are shown.
"""
import argparse
import statistics
import time

import numpy as np


def timed(fn, repeats, inner):
    fn()
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner * 1e3)
    return statistics.median(samples), min(samples)


def fastconv_cases(batch):
    import fastconv as fc
    from fastconv import _C
    rng = np.random.default_rng(0)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    model = fc.models.lenet5((28, 28, 1), 10, variant="modern", classifier_activation=None)
    model.compile(fc.optimizers.SGD(0.01, momentum=0.9), fc.losses.SparseCategoricalCrossentropy(from_logits=True))
    cases = {"LeNet-5 modern step": lambda: model.train_on_batch(x, y)}
    from fastconv.bench.models import fastconv_step
    cases["LeNet-5 classic step"] = fastconv_step("lenet5", batch, (28, 28, 1), 10)
    for shape in ((batch, 28, 28, 6), (batch, 10, 10, 16)):
        a = rng.standard_normal(shape).astype(np.float32)
        out, arg = _C.max_pool2d_forward_with_argmax(a, (2, 2), (2, 2), (0, 0, 0, 0))
        dy = rng.standard_normal(out.shape).astype(np.float32)
        cases[f"maxpool fwd {shape}"] = lambda a=a: _C.max_pool2d_forward_with_argmax(a, (2, 2), (2, 2), (0, 0, 0, 0))
        cases[f"maxpool bwd {shape}"] = lambda dy=dy, arg=arg, s=shape: _C.max_pool2d_backward_argmax(
            dy, arg, s, (2, 2), (2, 2), (0, 0, 0, 0))
        # the classic variant's pools
        cases[f"avgpool fwd {shape}"] = lambda a=a: _C.avg_pool2d_forward(a, (2, 2), (2, 2), (0, 0, 0, 0))
        cases[f"avgpool bwd {shape}"] = lambda dy=dy, s=shape: _C.avg_pool2d_backward(dy, s, (2, 2), (2, 2), (0, 0, 0, 0))
    return cases


def torch_cases(torch, batch):
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                          nn.Linear(84, 10)).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, 1, 28, 28).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    cases = {"LeNet-5 modern step": step}
    from fastconv.bench.models import torch_step
    cases["LeNet-5 classic step"] = torch_step(torch, "lenet5", batch, (28, 28, 1), 10)
    for shape in ((batch, 28, 28, 6), (batch, 10, 10, 16)):
        n, h, w, c = shape
        a = torch.randn(n, c, h, w).to(memory_format=torch.channels_last).requires_grad_()
        out, idx = torch.nn.functional.max_pool2d(a, 2, return_indices=True)
        dy = torch.randn_like(out)
        cases[f"maxpool fwd {shape}"] = lambda a=a: torch.nn.functional.max_pool2d(a.detach(), 2, return_indices=True)
        cases[f"maxpool bwd {shape}"] = lambda a=a, out=out, dy=dy: torch.autograd.grad(out, a, dy, retain_graph=True)
        avg = torch.nn.functional.avg_pool2d(a, 2)
        cases[f"avgpool fwd {shape}"] = lambda a=a: torch.nn.functional.avg_pool2d(a.detach(), 2)
        cases[f"avgpool bwd {shape}"] = lambda a=a, avg=avg, dy=dy: torch.autograd.grad(avg, a, dy, retain_graph=True)
    return cases


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_small_channels")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args(argv)
    import fastconv as fc
    fc.set_num_threads(args.threads)
    fc_cases = fastconv_cases(args.batch)
    try:
        import torch
        torch.set_num_threads(args.threads)
        th_cases = torch_cases(torch, args.batch)
    except ImportError:
        th_cases = {}
    print(f"threads={args.threads} batch={args.batch} repeats={args.repeats} (medians, ms)")
    print(f"{'case':32s} {'fastconv':>9s} {'torch':>9s} {'ratio':>6s} {'fc min':>9s} {'torch min':>9s} {'ratio':>6s}")
    for name, fn in fc_cases.items():
        inner = 3 if "step" in name else 20
        # interleave: fastconv then torch for each case
        fc_med, fc_min = timed(fn, args.repeats, inner)
        th_med, th_min = timed(th_cases[name], args.repeats, inner) if name in th_cases else (float("nan"),) * 2
        print(f"{name:32s} {fc_med:9.3f} {th_med:9.3f} {fc_med / th_med:6.2f} {fc_min:9.3f} {th_min:9.3f} "
              f"{fc_min / th_min:6.2f}")


if __name__ == "__main__":
    main()
