"""Input pipeline throughput: image_dataset_from_directory on a folder of generated JPEGs
(default 800 images of 320x240 in 4 classes, resized to 224x224, batch 32), images/s for

- the first epoch (every image decoded and resized),
- ``.cache().prefetch()`` epochs after the first (replayed from memory),
- fastconv's ``.cache(filename)`` epochs (replayed from disk) and how much the peak resident
  memory grew while writing and reading that cache,
- "augmentation on": cached epochs mapped through RandomFlip("horizontal") + RandomRotation(0.1)
  + RandomZoom(0.1) (Keras 3's defaults on both sides: fill_mode "reflect", bilinear), written as the
  Keras guide does, ``ds.cache().map(lambda x, y: (augment(x, training=True), y),
  num_parallel_calls=AUTOTUNE).prefetch(...)`` with ``augment`` a Sequential of the layers. That
  is also fastconv's fastest placement: in the map the transforms of one batch overlap the next
  batch's consumer (the warp kernel releases the GIL), while as the model's first layers they
  would run inside the training step, serially,

for fastconv and, side by side, ``tf.keras.utils.image_dataset_from_directory`` (tf.data) when a
Python with TensorFlow is given (``--tf-python``; default /work/peers-venv/bin/python when it
exists). Medians over `--repeats` runs. Usage:

    PYTHONPATH=. python benchmarks/bench_data.py [--quick] [--images 800] [--repeats 3] [--threads N]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_folder(root, n, classes=4, size=(240, 320)):
    """n photo-like JPEGs (smooth gradients + noise, quality 90) in `classes` sub-folders."""
    from PIL import Image
    rng = np.random.default_rng(0)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        folder = os.path.join(root, f"class{i % classes}")
        os.makedirs(folder, exist_ok=True)
        phase = rng.uniform(0, 6.28, 3)
        base = np.stack([128 + 100 * np.sin(xx / (17 + 3 * c) + phase[c]) * np.cos(yy / 23) for c in range(3)], -1)
        img = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"img{i:04d}.jpg"), "JPEG", quality=90)


def _epoch_rate(iterable, n_images):
    t = time.perf_counter()
    count = 0
    for xb, _ in iterable:
        count += len(xb)
    assert count == n_images, (count, n_images)
    return n_images / (time.perf_counter() - t)


def run_fastconv(root, n, repeats, threads):
    sys.path.insert(0, os.path.dirname(HERE))
    from fastconv.data import AUTOTUNE, image_dataset_from_directory
    make = lambda: image_dataset_from_directory(  # noqa: E731
        root, image_size=(224, 224), batch_size=32, seed=1, verbose=False,
        num_parallel_calls=threads or AUTOTUNE)
    first = [_epoch_rate(make(), n) for _ in range(repeats)]
    # on disk first, while the peak resident size is not yet that of a cache in memory
    with tempfile.TemporaryDirectory() as tmp:
        rss_before = _peak_rss_mib()
        disk_ds = make().cache(os.path.join(tmp, "cache")).prefetch(2)
        _epoch_rate(disk_ds, n)
        disk = [_epoch_rate(disk_ds, n) for _ in range(repeats)]
        disk_rss = _peak_rss_mib() - rss_before
    cached_ds = make().cache().prefetch(2)
    _epoch_rate(cached_ds, n)
    cached = [_epoch_rate(cached_ds, n) for _ in range(repeats)]
    import fastconv
    from fastconv import layers
    augment = fastconv.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.1),
                                   layers.RandomZoom(0.1)])
    augmented = _augmented_rates(cached_ds, augment, AUTOTUNE, n, repeats)
    return {"first_epoch": statistics.median(first), "cached_epoch": statistics.median(cached),
            "augmented_epoch": augmented,
            "disk_cache_epoch": statistics.median(disk), "disk_cache_peak_rss_growth_mib": disk_rss}


def _augmented_rates(cached_ds, augment, autotune, n, repeats):
    """Median images/s of cached epochs mapped through `augment` (a Keras-style model of
    preprocessing layers), the same code for both libraries; one warm-up epoch."""
    ds = cached_ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=autotune)
    ds = ds.prefetch(autotune)
    _epoch_rate(ds, n)
    return statistics.median(_epoch_rate(ds, n) for _ in range(repeats))


def _peak_rss_mib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tf(root, n, repeats, threads):
    import tensorflow as tf
    if threads:
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    make = lambda: tf.keras.utils.image_dataset_from_directory(  # noqa: E731
        root, image_size=(224, 224), batch_size=32, seed=1, verbose=False)
    first = [_epoch_rate(make(), n) for _ in range(repeats)]
    cached_ds = make().cache().prefetch(tf.data.AUTOTUNE)
    _epoch_rate(cached_ds, n)
    cached = [_epoch_rate(cached_ds, n) for _ in range(repeats)]
    from tensorflow.keras import layers
    augment = tf.keras.Sequential([layers.RandomFlip("horizontal"),
                                   layers.RandomRotation(0.1),
                                   layers.RandomZoom(0.1)])
    augmented = _augmented_rates(cached_ds, augment, tf.data.AUTOTUNE, n, repeats)
    return {"first_epoch": statistics.median(first), "cached_epoch": statistics.median(cached),
            "augmented_epoch": augmented}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=800)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="decoding threads (0: one per CPU)")
    p.add_argument("--quick", action="store_true", help="256 images, one repeat (a smoke run)")
    default_tf = "/work/peers-venv/bin/python"
    p.add_argument("--tf-python", default=default_tf if os.path.exists(default_tf) else "",
                   help="a Python with TensorFlow for the tf.data column ('' to skip)")
    p.add_argument("--only", choices=["fastconv", "tf"], help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.repeats = 256, 1
    if args.only:  # a child run on an existing folder: print one JSON line
        fn = run_fastconv if args.only == "fastconv" else run_tf
        print("RESULT " + json.dumps(fn(args.folder, args.images, args.repeats, args.threads)))
        return
    root = tempfile.mkdtemp(prefix="bench_data_")
    try:
        make_folder(root, args.images)
        rows = {"fastconv": run_fastconv(root, args.images, args.repeats, args.threads)}
        if args.tf_python:
            out = subprocess.run([args.tf_python, os.path.abspath(__file__), "--only", "tf", "--folder", root,
                                  "--images", str(args.images), "--repeats", str(args.repeats),
                                  "--threads", str(args.threads)], capture_output=True, text=True)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if line:
                rows["tf.data"] = json.loads(line[-1][len("RESULT "):])
            else:
                print(f"tf.data run failed:\n{out.stderr[-2000:]}", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.images} JPEGs 320x240 -> 224x224, batch 32, median of {args.repeats} (images/s)")
    print(f"{'pipeline':<10} {'first epoch':>12} {'cached epoch':>13} {'augmented epoch':>16}")
    for name, r in rows.items():
        print(f"{name:<10} {r['first_epoch']:>12.0f} {r['cached_epoch']:>13.0f} {r['augmented_epoch']:>16.0f}")
    r = rows["fastconv"]
    print(f"fastconv cache(filename) epochs: {r['disk_cache_epoch']:.0f} images/s, peak resident memory grew "
          f"{r['disk_cache_peak_rss_growth_mib']:.0f} MiB (the data: {args.images * 224 * 224 * 3 * 4 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
