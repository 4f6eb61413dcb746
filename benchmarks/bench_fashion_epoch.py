"""One Fashion-MNIST training epoch of LeNet-5 through `model.fit`, fastconv against PyTorch
(issue 18, target 1: fastconv's epoch <= 0.6x PyTorch's with the same model and batch).

Configurations: both LeNet-5 variants of fastconv.models.lenet5 (classic: sigmoid + average
pooling; modern: ReLU + max pooling), SGD (lr 0.01, momentum 0.9) and Adam (lr 1e-3), batch
128 and 256, logits + sparse softmax cross-entropy. Data: Fashion-MNIST's 60,000 training
images when the files are present (/usr/share/datasets/fashion-mnist or fastconv's data
folders; never downloaded here), else the embedded 8x8 digits upscaled to 28x28 and repeated to
60,000 samples; the report says which.

PyTorch: a twin of each model (same layers, Glorot-uniform weights and zero biases, as Keras
initialises them), channels_last, one epoch = a loop over a fresh random permutation of the
whole training tensor (no DataLoader), zero_grad / forward / cross_entropy / backward / step.
It runs in a separate process (an interpreter with torch: this one, or --torch-python, default
/work/peers-venv/bin/python), one process per configuration right after fastconv's runs of it,
so slow drift on a shared machine hits both alike. Both sides: one warm-up epoch on a small
slice, then --repeats (default 3) timed epochs, median reported, --threads threads (default:
all cores).

Full run (about 4 minutes on 2 cores; the lead runs it on a quiet machine):
    PYTHONPATH=. python benchmarks/bench_fashion_epoch.py --out fashion_epoch.md
Quick check:
    PYTHONPATH=. python benchmarks/bench_fashion_epoch.py --quick
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

VARIANTS = ("classic", "modern")
OPTIMIZERS = ("sgd", "adam")
BATCHES = (128, 256)
TRAIN_SAMPLES = 60000
WARMUP_SAMPLES = 1024
DEFAULT_TORCH_PYTHON = "/work/peers-venv/bin/python"


# ---- data ----

def load_training_set(samples):
    """(x float32 (N, 28, 28, 1) in [0, 1], y int64 (N,), description)."""
    from fastconv.datasets import digits, fashion_mnist
    if fashion_mnist.available():
        (x, y), _ = fashion_mnist.load_data(download=False)
        source = "Fashion-MNIST (60,000 training images)"
    else:
        (x8, y8), _ = digits.load_data(upscale_to=28, test_split=0)
        reps = -(-TRAIN_SAMPLES // len(x8))
        x, y = np.tile(x8, (reps, 1, 1))[:TRAIN_SAMPLES], np.tile(y8, reps)[:TRAIN_SAMPLES]
        source = f"embedded digits upscaled to 28x28, repeated to {TRAIN_SAMPLES:,} (Fashion-MNIST files not found)"
    x, y = x[:samples], y[:samples]
    if samples < TRAIN_SAMPLES:
        source += f", first {len(x):,} samples"
    return (x.astype(np.float32) / 255.0)[..., None], y.astype(np.int64), source


# ---- fastconv ----

def fastconv_epochs(variant, optimizer, batch, x, y, repeats, warmup_samples):
    import fastconv as fc
    from fastconv import models
    fc.set_seed(0)
    model = models.lenet5((28, 28, 1), 10, variant=variant, classifier_activation=None)
    opt = fc.optimizers.SGD(0.01, momentum=0.9) if optimizer == "sgd" else fc.optimizers.Adam(1e-3)
    model.compile(opt, fc.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:warmup_samples], y[:warmup_samples], batch_size=batch, epochs=1, verbose=0)
    times, losses = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        history = model.fit(x, y, batch_size=batch, epochs=1, shuffle=True, verbose=0)
        times.append(time.perf_counter() - t0)
        losses.append(float(history.history["loss"][-1]))
    return times, losses


# ---- PyTorch (run in the worker process; must not import fastconv) ----

def torch_model(torch, variant):
    nn = torch.nn
    act = nn.Sigmoid if variant == "classic" else nn.ReLU
    pool = nn.AvgPool2d if variant == "classic" else nn.MaxPool2d
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), act(), pool(2), nn.Conv2d(6, 16, 5), act(), pool(2),
                          nn.Flatten(), nn.Linear(16 * 5 * 5, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10))
    for m in model.modules():  # Keras's defaults: glorot_uniform kernels, zero biases
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model.to(memory_format=torch.channels_last)


def torch_epochs(variant, optimizer, batch, x, y, repeats, warmup_samples, threads):
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = torch_model(torch, variant)
    opt = (torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=1e-3))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    yt = torch.from_numpy(y)

    def epoch(xs, ys):
        order = torch.randperm(len(xs))
        total, count = 0.0, 0
        for start in range(0, len(xs), batch):
            idx = order[start:start + batch]
            xb = xs[idx].contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xb), ys[idx])
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        return total / count

    epoch(xt[:warmup_samples], yt[:warmup_samples])
    times, losses = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        losses.append(epoch(xt, yt))
        times.append(time.perf_counter() - t0)
    return times, losses


def torch_worker(argv):
    """Entry of the PyTorch process: reads the arrays (allow_pickle=False), prints one JSON line."""
    ap = argparse.ArgumentParser()
    for name in ("--data", "--variant", "--optimizer"):
        ap.add_argument(name, required=True)
    for name in ("--batch", "--repeats", "--warmup", "--threads"):
        ap.add_argument(name, type=int, required=True)
    a = ap.parse_args(argv)
    with np.load(a.data, allow_pickle=False) as data:
        x, y = data["x"], data["y"]
    times, losses = torch_epochs(a.variant, a.optimizer, a.batch, x, y, a.repeats, a.warmup, a.threads)
    import torch
    params = sum(p.numel() for p in torch_model(torch, a.variant).parameters())
    print(json.dumps({"times": times, "losses": losses, "params": params, "torch": torch.__version__}), flush=True)


def find_torch_python(requested):
    """An interpreter that imports torch, or None: --torch-python, this one, the peers venv."""
    candidates = [requested] if requested else [sys.executable, DEFAULT_TORCH_PYTHON]
    for python in candidates:
        if python and os.path.exists(python):
            probe = subprocess.run([python, "-c", "import torch"], capture_output=True)
            if probe.returncode == 0:
                return python
    return None


def run_torch(python, data_path, variant, optimizer, batch, repeats, warmup, threads):
    cmd = [python, os.path.abspath(__file__), "--torch-worker", "--data", data_path, "--variant", variant,
           "--optimizer", optimizer, "--batch", str(batch), "--repeats", str(repeats), "--warmup", str(warmup),
           "--threads", str(threads)]
    # the worker must import the peers' numpy/torch, not this interpreter's path entries
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"PyTorch worker failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- driver ----

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="3,000 samples, one repeat per configuration: checks the script, not a result")
    ap.add_argument("--samples", type=int, default=None, help=f"training samples per epoch (default {TRAIN_SAMPLES})")
    ap.add_argument("--repeats", type=int, default=None, help="timed epochs per side (default 3; --quick: 1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all cores)")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS))
    ap.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    ap.add_argument("--torch-python", default=None,
                    help=f"interpreter with torch (default: this one if it has torch, else {DEFAULT_TORCH_PYTHON})")
    ap.add_argument("--no-torch", action="store_true", help="fastconv only")
    ap.add_argument("--out", help="also write the markdown report to this file (atomically)")
    args = ap.parse_args(argv)
    if args.samples is None:
        args.samples = 3000 if args.quick else TRAIN_SAMPLES
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if not 1 <= args.samples <= TRAIN_SAMPLES:
        ap.error(f"--samples must be in 1..{TRAIN_SAMPLES}, got {args.samples}")
    for name in ("repeats", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if any(b < 1 for b in args.batches):
        ap.error(f"--batches must be >= 1, got {args.batches}")
    args.argv = list(argv)
    return args


def report(rows, source, args, torch_version):
    from fastconv.bench.harness import cpu_model  # here: the PyTorch worker runs where fastconv is absent
    lines = ["# LeNet-5 Fashion-MNIST epoch: fastconv model.fit vs PyTorch", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores; threads={args.threads}; "
             f"medians of {args.repeats}; data: {source}; PyTorch {torch_version or 'not run'}; "
             f"command: `python benchmarks/bench_fashion_epoch.py {' '.join(args.argv)}`".rstrip(), "",
             "| variant | optimizer | batch | fastconv s | PyTorch s | fastconv/PyTorch | loss fastconv | loss PyTorch |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        torch_s = f"{r['torch_s']:.3f}" if r["torch_s"] else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        torch_loss = f"{r['torch_loss']:.3f}" if r["torch_loss"] is not None else "-"
        lines.append(f"| {r['variant']} | {r['optimizer']} | {r['batch']} | {r['fastconv_s']:.3f} | {torch_s} | "
                     f"{ratio} | {r['fastconv_loss']:.3f} | {torch_loss} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--torch-worker"]:
        return torch_worker(argv[1:])
    args = parse_args(argv)
    import fastconv
    x, y, source = load_training_set(args.samples)
    warmup = min(WARMUP_SAMPLES, len(x))
    python = None if args.no_torch else find_torch_python(args.torch_python)
    if python is None and not args.no_torch:
        print("PyTorch not found (pass --torch-python): fastconv only", file=sys.stderr)
    threads_before = fastconv.get_num_threads()
    fastconv.set_num_threads(args.threads)
    rows, torch_version = [], None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data_path = os.path.join(tmp, "train.npz")
            if python:
                np.savez(data_path, x=x, y=y)
            for variant in args.variants:
                for optimizer in args.optimizers:
                    for batch in args.batches:
                        times, losses = fastconv_epochs(variant, optimizer, batch, x, y, args.repeats, warmup)
                        row = {"variant": variant, "optimizer": optimizer, "batch": batch,
                               "fastconv_s": statistics.median(times), "fastconv_loss": losses[-1],
                               "torch_s": None, "torch_loss": None, "ratio": None}
                        if python:
                            peer = run_torch(python, data_path, variant, optimizer, batch, args.repeats, warmup,
                                             args.threads)
                            torch_version = peer["torch"]
                            row.update(torch_s=statistics.median(peer["times"]), torch_loss=peer["losses"][-1])
                            row["ratio"] = row["fastconv_s"] / row["torch_s"]
                        rows.append(row)
                        print(f"  {variant:7s} {optimizer:4s} b{batch:<4d} fastconv {row['fastconv_s']:.3f} s"
                              + (f"  PyTorch {row['torch_s']:.3f} s  ratio {row['ratio']:.2f}" if python else ""),
                              file=sys.stderr, flush=True)
    finally:
        fastconv.set_num_threads(threads_before)
    text = report(rows, source, args, torch_version)
    print(text)
    if args.out:
        from fastconv.saving.atomic import atomic_write
        with atomic_write(args.out, "w") as f:
            f.write(text)
    return rows, text


if __name__ == "__main__":
    main()
