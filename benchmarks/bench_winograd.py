"""im2col vs Winograd, side by side, per pass, on the 3x3 stride-1 layers.

Layers: the 3x3 stride-1 groups-1 layers of benchmarks/specs.py plus ResNet-18 (CIFAR) stages.
For each pass (forward, backward data, backward weights): median time of --repeats runs
(interleaved: im2col, winograd, im2col, ... so drift on a shared machine hits both alike),
GFLOP/s of the direct-convolution flop count 2*N*OH*OW*9*Cin*Cout (so both columns measure
the same work and Winograd's rate is an "effective" one), the speed-up, and the relative error
max|err| / max|ref| of each algorithm against the float64 oracle (on the first 2 images).

    PYTHONPATH=. python benchmarks/bench_winograd.py [--quick] [--repeats 5] [--threads N]
"""
import argparse
import statistics
import time

import numpy as np

from fastconv import _C
from fastconv import reference as R

from fastconv.bench.specs import CONV_LAYERS

# name, N, H, W, Cin, Cout ('same' padding, 3x3, stride 1)
RESNET18_CIFAR = [
    ("r18c 32x32 64->64", 64, 32, 32, 64, 64),
    ("r18c 16x16 128->128", 64, 16, 16, 128, 128),
    ("r18c 8x8 256->256", 64, 8, 8, 256, 256),
    ("r18c 4x4 512->512", 64, 4, 4, 512, 512),
]
PASSES = ("forward", "backward_data", "backward_weights")
ALGOS = ("im2col", "winograd")


def layers():
    out = [(name, n, h, w, ci, co) for name, n, h, w, ci, co, k, s, pad, g in CONV_LAYERS
           if k == 3 and s == 1 and g == 1 and pad == "same"]
    return out + RESNET18_CIFAR


def pass_fns(x, wt, b, dy, args):
    return {
        "forward": lambda: _C.conv2d_forward(x, wt, b, *args),
        "backward_data": lambda: _C.conv2d_backward_data(dy, wt, x.shape, *args),
        "backward_weights": lambda: _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)[0],
    }


def time_pass(fn, repeats):
    """{algo: median seconds}, the two algorithms interleaved after one warm-up each."""
    times = {a: [] for a in ALGOS}
    for a in ALGOS:
        _C.set_conv_algorithm(a)
        fn()
    for _ in range(repeats):
        for a in ALGOS:
            _C.set_conv_algorithm(a)
            t0 = time.perf_counter()
            fn()
            times[a].append(time.perf_counter() - t0)
    return {a: statistics.median(t) for a, t in times.items()}


def rel_errors(x, wt, b, dy, args):
    """{pass: {algo: max|err| / max|ref|}} on the first two images against float64."""
    x, dy = x[:2], dy[:2]
    x64, w64, b64, dy64 = (a.astype(np.float64) for a in (x, wt, b, dy))
    ref = {"forward": R.conv2d_forward(x64, w64, b64, *args),
           "backward_data": R.conv2d_backward_data(dy64, w64, x.shape, *args),
           "backward_weights": R.conv2d_backward_weights(dy64, x64, wt.shape, *args, False)[0]}
    out = {p: {} for p in PASSES}
    for a in ALGOS:
        _C.set_conv_algorithm(a)
        got = {p: fn() for p, fn in pass_fns(x, wt, b, dy, args).items()}
        for p in PASSES:
            out[p][a] = float(np.abs(got[p] - ref[p]).max() / np.abs(ref[p]).max())
    return out


def bench_layer(layer, repeats, quick):
    name, n, h, w, ci, co = layer
    if quick:
        n, h, w = min(n, 2), min(h, 12), min(w, 12)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, h, w, ci), dtype=np.float32)
    wt = rng.standard_normal((3, 3, ci, co), dtype=np.float32)
    b = rng.standard_normal(co, dtype=np.float32)
    dy = rng.standard_normal((n, h, w, co), dtype=np.float32)
    flops = 2.0 * n * h * w * 9 * ci * co
    _C.set_conv_algorithm("winograd")
    used = _C.conv_algorithm(x.shape, wt.shape, *args)
    times = {p: time_pass(fn, repeats) for p, fn in pass_fns(x, wt, b, dy, args).items()}
    return {"name": name, "shape": f"N={n} {h}x{w} {ci}->{co}", "flops": flops, "times": times,
            "used": used, "errors": rel_errors(x, wt, b, dy, args)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", default=None, help="substring of the layer names to run")
    a = ap.parse_args(argv)
    if a.threads:
        _C.set_num_threads(a.threads)
    saved = _C.get_conv_algorithm()
    print(f"threads {_C.get_num_threads()}, median of {a.repeats}; GF/s = direct-conv flops / time; "
          f"err = max|err|/max|ref| vs float64")
    hdr = (f"{'layer':<22} {'shape':<22} {'pass':<16} {'im2col ms':>10} {'wino ms':>9} "
           f"{'im2col GF/s':>11} {'wino GF/s':>9} {'speedup':>7} {'err im2col':>10} {'err wino':>9}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    try:
        for layer in layers():
            if a.only and a.only not in layer[0]:
                continue
            r = bench_layer(layer, a.repeats, a.quick)
            rows.append(r)
            for p in PASSES:
                t, e = r["times"][p], r["errors"][p]
                note = "" if r["used"][p] == "winograd" else f"  (winograd ineligible: {r['used'][p]})"
                print(f"{r['name']:<22} {r['shape']:<22} {p:<16} {t['im2col'] * 1e3:10.2f} "
                      f"{t['winograd'] * 1e3:9.2f} {r['flops'] / t['im2col'] / 1e9:11.1f} "
                      f"{r['flops'] / t['winograd'] / 1e9:9.1f} {t['im2col'] / t['winograd']:6.2f}x "
                      f"{e['im2col']:10.1e} {e['winograd']:9.1e}{note}", flush=True)
    finally:
        _C.set_conv_algorithm(saved)
    return rows


if __name__ == "__main__":
    main()
