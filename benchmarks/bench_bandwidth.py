"""Memory-bandwidth roofline of fastconv's bandwidth-bound CPU kernels.

    PYTHONPATH=. python benchmarks/bench_bandwidth.py [--quick] [--threads N] [--repeats R]

Copy bandwidth is measured at each op's largest tensor size (np.copyto, one thread, and
fastconv's native OpenMP memcpy when the module has one; bytes = read + write), interleaved
repeat by repeat with the op itself so both see the same machine. "bytes" of an op is the
minimum traffic: every input array read once, every output array written once (the sum of
their nbytes). GB/s = bytes / median time; "% copy" compares with the faster copy of the same
run. Times are medians of --repeats runs (default 9, at least 7 unless --quick).
"""
import argparse
import os
import resource
import statistics
import sys
import time
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastconv  # noqa: E402
from fastconv import _C, functional as F, optimizers  # noqa: E402


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _nbytes(obj):
    """Total nbytes of the arrays in obj (nested tuples/lists; None and scalars count 0)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    return 0


def median_seconds(fn, repeats, warmup=2):
    return interleaved_medians({"fn": fn}, repeats, warmup)["fn"]


def interleaved_medians(fns, repeats, warmup=2):
    """{name: median seconds}: each repeat runs every fn once in turn, so slow drift on a shared
    machine (other processes' memory traffic) hits the op and its copy baseline alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    faults = {name: 0 for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            f0 = _minor_faults()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            faults[name] += _minor_faults() - f0
    out = {name: statistics.median(ts) for name, ts in times.items()}
    out["faults"] = faults.get("op", 0) / repeats
    return out


def _minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ---------------------------------------------------------------- cases
# A case: (name, setup) where setup() -> (fn, inputs, outputs, largest): fn runs the op once;
# inputs/outputs are the arrays it reads and writes (for the byte count); largest is the
# element count of its biggest tensor (the copy baseline's size).

def _pool_cases(n, h, c):
    x = _rand((n, h, h, c), 0)
    cases = []

    def max_fwd():
        y, arg = F.max_pool2d_with_argmax(x, 3, 2, "same")
        return (lambda: F.max_pool2d_with_argmax(x, 3, 2, "same")), (x,), (y, arg), x.size

    def max_bwd():
        y, arg = F.max_pool2d_with_argmax(x, 3, 2, "same")
        dy = _rand(y.shape, 1)
        dx = F.max_pool2d_backward_argmax(dy, arg, x.shape, 3, 2, "same")
        return (lambda: F.max_pool2d_backward_argmax(dy, arg, x.shape, 3, 2, "same")), (dy, arg), (dx,), x.size

    def max_fwd_plain():  # before argmax existed: forward returns y only, backward re-reads x
        y = F.max_pool2d(x, 3, 2, "same")
        return (lambda: F.max_pool2d(x, 3, 2, "same")), (x,), (y,), x.size

    def max_bwd_plain():
        y = F.max_pool2d(x, 3, 2, "same")
        dy = _rand(y.shape, 1)
        dx = F.max_pool2d_backward(dy, x, 3, 2, "same")
        return (lambda: F.max_pool2d_backward(dy, x, 3, 2, "same")), (dy, x), (dx,), x.size

    if hasattr(F, "max_pool2d_with_argmax"):
        cases += [("max pool 3x3 s2 same fwd", max_fwd), ("max pool 3x3 s2 same bwd", max_bwd)]
    cases += [("max pool 3x3 s2 same fwd (y only)", max_fwd_plain),
              ("max pool 3x3 s2 same bwd (from x)", max_bwd_plain)]

    def avg_fwd():
        y = F.avg_pool2d(x, 2)
        return (lambda: F.avg_pool2d(x, 2)), (x,), (y,), x.size

    def avg_bwd():
        dy = _rand(F.avg_pool2d(x, 2).shape, 1)
        dx = F.avg_pool2d_backward(dy, x.shape, 2)
        return (lambda: F.avg_pool2d_backward(dy, x.shape, 2)), (dy,), (dx,), x.size

    def gap_fwd():
        y = F.global_avg_pool2d(x)
        return (lambda: F.global_avg_pool2d(x)), (x,), (y,), x.size

    def gap_bwd():
        dy = _rand((n, c), 1)
        dx = F.global_avg_pool2d_backward(dy, x.shape)
        return (lambda: F.global_avg_pool2d_backward(dy, x.shape)), (dy,), (dx,), x.size

    cases += [("avg pool 2x2 fwd", avg_fwd), ("avg pool 2x2 bwd", avg_bwd),
              ("global avg pool fwd", gap_fwd), ("global avg pool bwd", gap_bwd)]
    return cases


def _bn_cases(n, h, c):
    x = _rand((n, h, h, c), 0)
    gamma, beta = _rand((c,), 1), _rand((c,), 2)

    def train_fwd():
        out = F.batch_norm_train(x, gamma, beta)
        return (lambda: F.batch_norm_train(x, gamma, beta)), (x, gamma, beta), out, x.size

    def train_bwd():
        _, mean, _, inv = F.batch_norm_train(x, gamma, beta)
        dy = _rand(x.shape, 3)
        out = F.batch_norm_backward(dy, x, gamma, mean, inv)
        return (lambda: F.batch_norm_backward(dy, x, gamma, mean, inv)), (dy, x, gamma, mean, inv), out, x.size

    def infer():
        mean, var = _rand((c,), 4), np.abs(_rand((c,), 5)) + 0.5
        y = F.batch_norm_inference(x, gamma, beta, mean, var)
        return (lambda: F.batch_norm_inference(x, gamma, beta, mean, var)), (x, gamma, beta, mean, var), (y,), x.size

    return [("batch norm train fwd", train_fwd), ("batch norm bwd", train_bwd),
            ("batch norm inference", infer)]


def _act_cases(n, h, c):
    x = _rand((n, h, h, c), 0)
    b = _rand((c,), 1)
    cases = []
    for act in ("relu", "sigmoid", "tanh"):
        def fwd(act=act):
            y = F.bias_activation(x, b, act)
            return (lambda: F.bias_activation(x, b, act)), (x, b), (y,), x.size

        def bwd(act=act):
            y = F.bias_activation(x, b, act)
            dy = _rand(x.shape, 2)
            out = F.bias_activation_backward(dy, y, act)
            return (lambda: F.bias_activation_backward(dy, y, act)), (dy, y), out, x.size

        cases += [(f"bias+{act} fwd", fwd), (f"bias+{act} bwd", bwd)]
    return cases


def _softmax_cases(n, c):
    logits = _rand((n, c), 0) * 3
    labels = np.random.default_rng(1).integers(0, c, n).astype(np.int64)

    def fwd():
        out = F.softmax_cross_entropy(logits, labels)
        return (lambda: F.softmax_cross_entropy(logits, labels)), (logits, labels), out, logits.size

    def bwd():
        _, probs = F.softmax_cross_entropy(logits, labels)
        dloss = np.full(n, 1.0 / n, np.float32)
        out = F.softmax_cross_entropy_backward(probs, labels, dloss)
        return (lambda: F.softmax_cross_entropy_backward(probs, labels, dloss)), (probs, labels, dloss), (out,), logits.size

    return [(f"softmax xent {n}x{c} fwd", fwd), (f"softmax xent {n}x{c} bwd", bwd)]


def _optimizer_cases(size):
    def make(opt_fn, slots):
        def setup():
            var = types.SimpleNamespace(data=_rand((size,), 0), name="w")
            grad = _rand((size,), 1) * 1e-3
            opt = opt_fn()
            opt.apply_gradients([(grad, var)])  # build the slots
            state = list(opt.get_state(var).values())
            assert len(state) == slots
            # reads w, g and every slot; writes w and every slot
            return (lambda: opt.apply_gradients([(grad, var)])), [var.data, grad] + state, [var.data] + state, size
        return setup

    return [("SGD momentum update", make(lambda: optimizers.SGD(0.01, momentum=0.9), 1)),
            ("Adam update", make(lambda: optimizers.Adam(1e-3), 2))]


# MobileNet v1's depthwise layers at 224x224: (input size, channels, stride); stride 2 with
# the (0, 1) padding of its ZeroPadding2D + 'valid'.
MOBILENET_DEPTHWISE = [(112, 32, 1), (112, 64, 2), (56, 128, 1), (56, 128, 2), (28, 256, 1),
                       (28, 256, 2), (14, 512, 1), (14, 512, 2), (7, 1024, 1)]


def _depthwise_cases(n, layers):
    """3x3 depthwise forward with bias and the relu6 inference fuses into it (the kernel's
    inference path: issue 18 item 4). At batch 1 the tensors stay in L2/L3 between calls."""
    cases = []
    for h, c, s in layers:
        def fwd(h=h, c=c, s=s):
            x, w, b = _rand((n, h, h, c), 0), _rand((3, 3, 1, c), 1), _rand((c,), 2)
            args = ((s, s), (1, 1, 1, 1) if s == 1 else (0, 1, 0, 1), (1, 1), c, "relu6", None)
            y = _C.conv2d_forward(x, w, b, *args)
            return (lambda: _C.conv2d_forward(x, w, b, *args)), (x, w, b), (y,), x.size
        cases.append((f"depthwise 3x3/{s} + relu6 fwd {n}x{h}x{h}x{c}", fwd))
    return cases


def all_cases(quick):
    if quick:
        return (_pool_cases(2, 9, 8) + _bn_cases(2, 5, 8) + _act_cases(2, 5, 8)
                + _softmax_cases(8, 10) + _optimizer_cases(1000) + _depthwise_cases(1, [(9, 20, 1), (9, 20, 2)]))
    return (_pool_cases(32, 112, 64) + _bn_cases(32, 56, 64) + _act_cases(32, 56, 64)
            + _softmax_cases(4096, 1000) + _optimizer_cases(25_000_000)
            + _depthwise_cases(1, MOBILENET_DEPTHWISE) + _depthwise_cases(32, MOBILENET_DEPTHWISE))


# ---------------------------------------------------------------- copy baseline

def copy_fns(elements):
    """{"np.copyto": fn, "native copy": fn} copying float32 arrays of `elements`; each moves
    2 * 4 * elements bytes (read + write)."""
    src = _rand((elements,), 9)
    dst = np.empty_like(src)
    fns = {"np.copyto": lambda: np.copyto(dst, src)}
    if hasattr(_C, "parallel_copy"):
        fns["native copy"] = lambda: _C.parallel_copy(dst, src)
    return fns


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 9; 3 with --quick)")
    p.add_argument("--filter", default="", help="only cases whose name contains this")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 9)
    fastconv.set_num_threads(args.threads)
    rows, copies, copy_cache = [], {}, {}
    for name, setup in all_cases(args.quick):
        if args.filter and args.filter not in name:
            continue
        fn, inputs, outputs, largest = setup()
        if largest not in copy_cache:
            copy_cache[largest] = copy_fns(largest)
        # The op and its copy baselines interleaved, repeat by repeat.
        med = interleaved_medians({"op": fn, **copy_cache[largest]}, repeats)
        copy_gbs = {k: 8 * largest / med[k] / 1e9 for k in copy_cache[largest]}
        for k, gbs in copy_gbs.items():
            copies.setdefault(largest, {}).setdefault(k, []).append(gbs)
        nbytes = _nbytes(inputs) + _nbytes(outputs)
        gbs = nbytes / med["op"] / 1e9
        best_copy = max(copy_gbs.values())
        rows.append(dict(op=name, mb=nbytes / 1e6, ms=med["op"] * 1e3, gbs=gbs, copy_gbs=best_copy,
                         pct=100 * gbs / best_copy, copy_elements=largest, faults=med["faults"]))
    copies = {n: {k: statistics.median(v) for k, v in bw.items()} for n, bw in copies.items()}
    print(f"threads {args.threads}, {repeats} repeats (median), bytes = inputs read once + outputs written once;")
    print("each op is timed interleaved with copies of its largest tensor's size; % copy is against the")
    print("faster of those copies in that same run (its GB/s in the last column)\n")
    print("| op | MB moved | ms | GB/s | % copy | copy GB/s | page faults/call |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for elements, bw in sorted(copies.items()):
        for kind, gbs in bw.items():
            mb = 8 * elements / 1e6
            print(f"| copy {kind} {4 * elements / 1e6:.1f} MB (median over its ops) | {mb:.1f} | {mb / gbs:.3f} "
                  f"| {gbs:.1f} | 100 | {gbs:.1f} | |")
    for r in rows:
        print(f"| {r['op']} | {r['mb']:.1f} | {r['ms']:.3f} | {r['gbs']:.1f} | {r['pct']:.0f} | {r['copy_gbs']:.1f} "
              f"| {r['faults']:.0f} |")
    return {"copies": copies, "rows": rows, "threads": args.threads, "repeats": repeats}


if __name__ == "__main__":
    main(sys.argv[1:])
