"""The sweep's few-channel pathologies (issue 18, item 3), fastconv beside PyTorch in one
process: softmax over 3 classes per pixel, batch norm and bias+relu at 1 and 3 channels, max
and average pooling at 1, 3 and 24 channels, dense layers with 1 and 3 features.

    PYTHONPATH=<repo> <python with torch> benchmarks/bench_narrow_kernels.py [--threads 1] [--repeats 15]

PyTorch runs the same arrays: NCHW tensors in channels_last memory (the NHWC bytes), its own
kernels called directly (aten ops, no autograd bookkeeping) so both sides time one kernel.
Timings are interleaved; each figure is the median and the minimum (the steadier figure on a
loaded machine) of --repeats calls, in ms; ratio = fastconv / PyTorch by the minima (< 1:
fastconv faster). Without torch only fastconv's column is printed.
"""
import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fastconv.bench.harness import cpu_model, load_peers, set_threads, time_interleaved  # noqa: E402

from fastconv import functional as F  # noqa: E402


def cases(torch):
    """[(name, fastconv callable, torch callable or None)]."""
    rng = np.random.default_rng(0)
    out = []

    def nchw(a):  # an NHWC array as a channels_last NCHW tensor sharing its bytes
        return torch.from_numpy(a).permute(0, 3, 1, 2) if torch else None

    # softmax over 3 classes at every pixel of N=32, 56x56
    x = rng.standard_normal((32 * 56 * 56, 3), dtype=np.float32)
    y = F.softmax(x)
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    tx, ty, tdy = (torch.from_numpy(a) for a in (x, y, dy)) if torch else (None,) * 3
    out.append(("softmax fwd (100352, 3)", lambda: F.softmax(x), torch and (lambda: torch.softmax(tx, 1))))
    out.append(("softmax bwd (100352, 3)", lambda: F.softmax_backward(dy, y),
                torch and (lambda: torch.ops.aten._softmax_backward_data(tdy, ty, 1, torch.float32))))

    for c in (1, 3):
        shape = (32, 56, 56, c)
        x, dy = rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)
        g, b = np.ones(c, np.float32), np.zeros(c, np.float32)
        _, mean, _, inv_std = F.batch_norm_train(x, g, b)
        out.append((f"batch_norm fwd {shape}", lambda x=x, g=g, b=b: F.batch_norm_train(x, g, b), None))
        out.append((f"batch_norm bwd {shape}", lambda x=x, dy=dy, g=g, m=mean, s=inv_std:
                    F.batch_norm_backward(dy, x, g, m, s), None))
        bias = rng.standard_normal(c, dtype=np.float32)
        yr = F.bias_activation(x, bias, "relu")
        out.append((f"bias+relu bwd {shape}", lambda dy=dy, yr=yr: F.bias_activation_backward(dy, yr, "relu", True),
                    None))
        if torch:
            tx, tdy, tg, tb = nchw(x), nchw(dy), torch.from_numpy(g), torch.from_numpy(b)
            _, tmean, tinv = torch.ops.aten.native_batch_norm(tx, tg, tb, None, None, True, 0.1, 1e-3)
            out[-3] = out[-3][:2] + (lambda tx=tx, tg=tg, tb=tb:
                                     torch.ops.aten.native_batch_norm(tx, tg, tb, None, None, True, 0.1, 1e-3),)
            out[-2] = out[-2][:2] + (lambda tx=tx, tdy=tdy, tg=tg, tm=tmean, ti=tinv:
                                     torch.ops.aten.native_batch_norm_backward(tdy, tx, tg, None, None, tm, ti, True,
                                                                               1e-3, [True, True, True]),)
            tyr = nchw(yr)
            out[-1] = out[-1][:2] + (lambda tdy=tdy, tyr=tyr:
                                     (torch.ops.aten.threshold_backward(tdy, tyr, 0.0), tdy.sum((0, 2, 3))),)

    for c in (1, 3, 24):
        shape = (256, 28, 28, c) if c < 16 else (32, 56, 56, c)
        x = rng.standard_normal(shape, dtype=np.float32)
        y, arg = F.max_pool2d_with_argmax(x, 2)
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        out.append((f"max_pool fwd {shape}", lambda x=x: F.max_pool2d_with_argmax(x, 2), None))
        out.append((f"max_pool bwd {shape}", lambda dy=dy, arg=arg, s=shape: F.max_pool2d_backward_argmax(dy, arg, s, 2),
                    None))
        out.append((f"avg_pool fwd {shape}", lambda x=x: F.avg_pool2d(x, 2), None))
        if torch:
            tx, tdy = nchw(x), nchw(dy)
            ty, tidx = torch.ops.aten.max_pool2d_with_indices(tx, [2, 2], [2, 2])
            out[-3] = out[-3][:2] + (lambda tx=tx: torch.ops.aten.max_pool2d_with_indices(tx, [2, 2], [2, 2]),)
            out[-2] = out[-2][:2] + (lambda tdy=tdy, tx=tx, ti=tidx: torch.ops.aten.max_pool2d_with_indices_backward(
                tdy, tx, [2, 2], [2, 2], [0, 0], [1, 1], False, ti),)
            out[-1] = out[-1][:2] + (lambda tx=tx: torch.nn.functional.avg_pool2d(tx, 2),)

    for c in (1, 3):
        rows = 32 * 56 * 56
        x, w, b = (rng.standard_normal(s, dtype=np.float32) for s in ((rows, c), (c, c), (c,)))
        tx, tw, tb = (torch.from_numpy(a) for a in (x, np.ascontiguousarray(w.T), b)) if torch else (None,) * 3
        out.append((f"dense fwd ({rows}, {c}) + bias", lambda x=x, w=w, b=b: F.dense(x, w, b),
                    torch and (lambda tx=tx, tw=tw, tb=tb: torch.nn.functional.linear(tx, tw, tb))))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    if args.repeats < 3:
        ap.error(f"--repeats must be >= 3, got {args.repeats}")
    peers = load_peers(["torch"])
    torch = peers.get("torch")
    set_threads(args.threads, peers)
    print(f"# few-channel kernels, {cpu_model()}, {os.cpu_count()} cores, threads={args.threads}, "
          f"os.getloadavg()={os.getloadavg()[0]:.1f}; ms median / min of {args.repeats}")
    print("| case | fastconv | PyTorch | ratio (min) |\n|---|---:|---:|---:|")
    for name, ours, theirs in cases(torch):
        fns = {"fastconv": ours, **({"torch": theirs} if theirs else {})}
        t = time_interleaved(fns, args.repeats, warmup=2)
        fc = f"{1e3 * statistics.median(t['fastconv']):.3f} / {1e3 * min(t['fastconv']):.3f}"
        if theirs:
            pt = f"{1e3 * statistics.median(t['torch']):.3f} / {1e3 * min(t['torch']):.3f}"
            ratio = f"{min(t['fastconv']) / min(t['torch']):.2f}"
        else:
            pt = ratio = "-"
        print(f"| {name} | {fc} | {pt} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
