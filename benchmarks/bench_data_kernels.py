"""Throughput of the input pipeline's batch image kernels (fastconv.data.kernels): the compiled
Cython kernels against their NumPy twins, and resizing against Pillow (one Image.resize per
image, the way a decoding loop would do it).

    PYTHONPATH=. python -m benchmarks.bench_data_kernels [--batch 64] [--repeats 5] [--threads N]

Prints images/s per kernel and implementation (best of `repeats`).
"""
import argparse
import time

import numpy as np

import fastconv
from fastconv.data import kernels
from fastconv.data.affine import keras_transform_matrix


def _best(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        fastconv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.batch
    src = rng.integers(0, 256, (n, 240, 320, 3), dtype=np.uint8)
    img = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    mats = np.stack([keras_transform_matrix(rng.uniform(-20, 20), rng.uniform(-10, 10), rng.uniform(-10, 10),
                                            rng.uniform(-5, 5), 1.1, 0.9, 224, 224) for _ in range(n)])
    cases = {
        "resize bilinear 240x320->224x224": lambda impl: kernels.resize(src, (224, 224), "bilinear", impl),
        "resize nearest 240x320->224x224": lambda impl: kernels.resize(src, (224, 224), "nearest", impl),
        "resize area 240x320->224x224": lambda impl: kernels.resize(src, (224, 224), "area", impl),
        "crop 200x200 + flip": lambda impl: kernels.crop_flip(img, 12, 12, (200, 200), rng.random(n) < .5,
                                                              False, impl),
        "affine warp 224x224 reflect": lambda impl: kernels.warp_affine(img, mats, fill_mode="reflect",
                                                                        implementation=impl),
        "colour jitter 224x224": lambda impl: kernels.color_jitter(img, rng.uniform(-20, 20, n),
                                                                   rng.uniform(.8, 1.2, n), implementation=impl),
        "uint8->float32 normalise 224x224": lambda impl: kernels.to_float(img, 1 / 255, [.485, .456, .406],
                                                                          [.229, .224, .225], impl),
    }
    impls = ["cython", "numpy"] if kernels.compiled_available() else ["numpy"]
    print(f"batch {n}, threads {fastconv.get_num_threads()}; images/s (best of {args.repeats})")
    print(f"{'kernel':36s}" + "".join(f"{i:>12s}" for i in impls))
    for name, fn in cases.items():
        row = [n / _best(lambda: fn(i), args.repeats) for i in impls]
        print(f"{name:36s}" + "".join(f"{r:12.0f}" for r in row))
    try:
        from PIL import Image
    except ImportError:
        return
    pil = [Image.fromarray(a) for a in src]
    for name, res in (("bilinear", Image.BILINEAR), ("nearest", Image.NEAREST)):
        t = _best(lambda: [np.asarray(p.resize((224, 224), res)) for p in pil], args.repeats)
        print(f"{'Pillow resize ' + name + ' (1 thread)':36s}{n / t:12.0f}")


if __name__ == "__main__":
    main()
