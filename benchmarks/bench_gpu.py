"""GPU benchmark: fastconv's cuda backend vs PyTorch + cuDNN on the same GPU, same run.

  python benchmarks/bench_gpu.py --out LOGDIR [--quick] [--tf32]

Layer set (benchmarks/specs.py, issue 8's sizes): forward + backward (data and weights) of each
conv layer and pool/BN/dense op. Models: training steps (forward, backward, SGD-momentum update)
of LeNet-5, ResNet-18-CIFAR, the small DenseNet and ResNet-50 (batch 64, 224x224), plus one
LeNet-5 epoch on Fashion-MNIST-shaped data (60000 images, batch 256). Timing: CUDA events
around a block of iterations after warm-up, median of repeats; random non-zero inputs; both
frameworks in float32 (TF32 off in cuBLAS and cuDNN unless --tf32). Writes bench_gpu.json and
bench_gpu.md into --out.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parents[1]))  # `benchmarks` package; installed fastconv wins
from fastconv.bench.models import _batch, torch_model  # noqa: E402
from fastconv.bench.specs import CONV_LAYERS, OTHER_OPS  # noqa: E402

import fastconv  # noqa: E402
from fastconv import cuda as fcuda  # noqa: E402
from fastconv import functional as F  # noqa: E402

MODELS = [("lenet5", 256, (28, 28, 1), 10), ("resnet18_cifar", 128, (32, 32, 3), 10),
          ("small_densenet", 64, (96, 96, 1), 10), ("resnet50", 64, (224, 224, 3), 1000)]


def time_gpu(fn, event_cls, sync, iters, repeats, warmup=3):
    """Median ms per call: events around `iters` back-to-back calls (host launch cost included)."""
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(repeats):
        start, end = event_cls(), event_cls()
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        out.append(ms_between(start, end) / iters)
    return statistics.median(out), min(out), max(out)


def ms_between(a, b):
    return a.elapsed_time(b) if hasattr(a, "elapsed_time") else __import__("cupy").cuda.get_elapsed_time(a, b)


def dev(shape, seed):
    return fcuda.to_device(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


# ---- fastconv cases (device arrays, cuda backend) ----
def fc_conv(spec):
    _, n, h, w, cin, cout, k, s, padding, groups = spec
    x, wt, b = dev((n, h, w, cin), 0), dev((k, k, cin // groups, cout), 1), dev((cout,), 2)
    dy = dev(F.conv2d(x, wt, b, strides=s, padding=padding, groups=groups).shape, 3)
    return lambda: (F.conv2d(x, wt, b, strides=s, padding=padding, groups=groups),
                    F.conv2d_backward(dy, x, wt, strides=s, padding=padding, groups=groups))


def fc_op(spec):
    _, kind, n, h, w, c, p, s, padding = spec
    if kind == "dense":
        x, wt, b, dy = dev((n, c), 0), dev((c, p), 1), dev((p,), 2), dev((n, p), 3)
        return lambda: (F.dense(x, wt, b), F.dense_backward(dy, x, wt))
    x = dev((n, h, w, c), 0)
    if kind == "batchnorm":
        g, bt, dy = dev((c,), 1), dev((c,), 2), dev((n, h, w, c), 3)

        def bn():
            _, mean, _, inv = F.batch_norm_train(x, g, bt)
            F.batch_norm_backward(dy, x, g, mean, inv)
        return bn
    fwd, bwd = (F.max_pool2d, F.max_pool2d_backward) if kind == "maxpool" else (F.avg_pool2d, F.avg_pool2d_backward)
    dy = dev(fwd(x, p, s, padding).shape, 3)
    if kind == "maxpool":
        return lambda: (fwd(x, p, s, padding), bwd(dy, x, p, s, padding))
    return lambda: (fwd(x, p, s, padding), bwd(dy, x.shape, p, s, padding))


def fc_model_step(name, batch, shape, classes):
    from fastconv.bench.models import fastconv_model
    model = fcuda.model_to_device(fastconv_model(name, shape, classes))
    opt = fastconv.optimizers.SGD(0.01, momentum=0.9)
    loss_fn = fastconv.losses.SparseCategoricalCrossentropy(from_logits=name == "lenet5")
    x, y = _batch(batch, shape, classes)
    x, y = fcuda.to_device(x), fcuda.to_device(y)
    variables = model.trainable_weights

    def step():  # no host read-back: the loss stays on the device
        loss = loss_fn(y, model(x, training=True))
        for v in variables:
            v.zero_grad()
        loss.backward()
        opt.apply_gradients([(v.grad, v) for v in variables])
    return step


def fit_epoch_seconds(n=60000, batch=256):
    from fastconv.bench.models import fastconv_model
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, n)
    with fastconv.backend("cuda"):
        model = fastconv_model("lenet5", (28, 28, 1), 10)
        model.compile(fastconv.optimizers.SGD(0.01, momentum=0.9),
                      fastconv.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
        model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)  # warm up
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # ends with a host read: synchronised
        return time.perf_counter() - t0


# ---- PyTorch cases (channels_last, cuDNN) ----
def th_data(torch, shape, seed):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32)).cuda()


def th_conv(torch, spec):
    _, n, h, w, cin, cout, k, s, padding, groups = spec
    conv = torch.nn.Conv2d(cin, cout, k, s, padding=0, groups=groups).cuda().to(memory_format=torch.channels_last)
    x = th_data(torch, (n, cin, h, w), 0).contiguous(memory_format=torch.channels_last).requires_grad_()
    pad = torch.nn.ZeroPad2d(_tf_pads(h, w, k, s, padding))

    def step():
        y = conv(pad(x))
        y.backward(torch.ones_like(y))
    return step


def _tf_pads(h, w, k, s, padding):
    if padding == "valid":
        return (0, 0, 0, 0)
    (t, b), (l, r) = F.same_padding(h, k, s), F.same_padding(w, k, s)
    return (l, r, t, b)


def th_op(torch, spec):
    _, kind, n, h, w, c, p, s, padding = spec
    nn = torch.nn
    if kind == "dense":
        lin = nn.Linear(c, p).cuda()
        x = th_data(torch, (n, c), 0).requires_grad_()
        mod = lin
    else:
        x = th_data(torch, (n, c, h, w), 0).contiguous(memory_format=torch.channels_last).requires_grad_()
        if kind == "batchnorm":
            mod = nn.BatchNorm2d(c).cuda()
        else:
            pool = nn.MaxPool2d(p, s) if kind == "maxpool" else nn.AvgPool2d(p, s, count_include_pad=False)
            mod = nn.Sequential(nn.ZeroPad2d(_tf_pads(h, w, p, s, padding)), pool) if kind == "avgpool" else \
                nn.Sequential(nn.ConstantPad2d(_tf_pads(h, w, p, s, padding), float("-inf")), pool)

    def step():
        y = mod(x)
        y.backward(torch.ones_like(y))
    return step


def th_model_step(torch, name, batch, shape, classes):
    model = torch_model(torch, name, shape, classes).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = _batch(batch, shape, classes)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).cuda()
    yt = torch.from_numpy(y).cuda()

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu-logs")
    ap.add_argument("--quick", action="store_true", help="few repeats, small models only")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in both frameworks")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import cupy
    import torch
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    fcuda.allow_tf32(args.tf32)
    fastconv.set_backend("cuda")
    reps, iters = (3, 3) if args.quick else (10, 10)
    fc_t = lambda fn, it=iters: time_gpu(fn, cupy.cuda.Event, cupy.cuda.Device().synchronize, it, reps)  # noqa: E731
    th_t = lambda fn, it=iters: time_gpu(fn, lambda: torch.cuda.Event(enable_timing=True), torch.cuda.synchronize, it, reps)  # noqa: E731

    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cupy": cupy.__version__,
               "tf32": args.tf32, "layers": [], "models": []}
    rows = []
    for spec, fc_fn, th_fn in ([(s, fc_conv, th_conv) for s in CONV_LAYERS] + [(s, fc_op, th_op) for s in OTHER_OPS]):
        fc_ms = fc_t(fc_fn(spec))
        th_ms = th_t(th_fn(torch, spec))
        results["layers"].append({"name": spec[0], "fastconv_ms": fc_ms, "torch_ms": th_ms})
        rows.append(f"| {spec[0]} | {fc_ms[0]:.3f} | {th_ms[0]:.3f} | {th_ms[0] / fc_ms[0]:.2f} |")
        print(rows[-1], flush=True)
    lines = [f"# fastconv cuda vs PyTorch {torch.__version__} + cuDNN on {results['device']} (TF32 {'on' if args.tf32 else 'off'})",
             "", "## Layers (forward + backward, ms, median)", "", "| layer | fastconv | torch | torch/fastconv |",
             "|---|---|---|---|", *rows, "", "## Training steps", "",
             "| model | batch | fastconv img/s | torch img/s | fastconv/torch |", "|---|---|---|---|---|"]
    for name, batch, shape, classes in (MODELS[:2] if args.quick else MODELS):
        it = 3 if name == "resnet50" else iters
        fc_ms = fc_t(fc_model_step(name, batch, shape, classes), it)
        th_ms = th_t(th_model_step(torch, name, batch, shape, classes), it)
        fc_ips, th_ips = 1e3 * batch / fc_ms[0], 1e3 * batch / th_ms[0]
        results["models"].append({"name": name, "batch": batch, "fastconv_ms": fc_ms, "torch_ms": th_ms,
                                  "fastconv_img_s": fc_ips, "torch_img_s": th_ips})
        lines.append(f"| {name} | {batch} | {fc_ips:.0f} | {th_ips:.0f} | {fc_ips / th_ips:.2f} |")
        print(lines[-1], flush=True)
    # One LeNet-5 epoch (60000 Fashion-MNIST-sized images, batch 256), wall clock incl. sync.
    step = fc_model_step("lenet5", 256, (28, 28, 1), 10)
    step()
    cupy.cuda.Device().synchronize()
    t0 = time.perf_counter()
    for _ in range(-(-60000 // 256)):
        step()
    cupy.cuda.Device().synchronize()
    results["lenet5_epoch_s"] = time.perf_counter() - t0
    lines += ["", f"LeNet-5 one epoch (60000 x 28x28x1, batch 256): {results['lenet5_epoch_s']:.2f} s (target < 2 s)"]
    print(lines[-1])
    # The same epoch the way a user runs it: model.fit on host arrays (staged on the GPU once,
    # shuffled, metrics accumulated on the device, logs read back at the epoch's end).
    results["lenet5_fit_epoch_s"] = fit_epoch_seconds()
    lines.append(f"LeNet-5 one epoch through model.fit (host arrays, shuffle, accuracy metric): "
                 f"{results['lenet5_fit_epoch_s']:.2f} s")
    print(lines[-1])
    (out / "bench_gpu.json").write_text(json.dumps(results, indent=1))
    (out / "bench_gpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
