"""ResNet-50 training fed from an image folder vs from in-memory arrays of the same images.

One ``fastconv.applications.ResNet50(weights=None)`` model (SGD with momentum, batch 32) is
trained with ``fit`` from three inputs holding the same decoded images, one after another:

- ``arrays``: the images as NumPy arrays, ``fit(x, y, batch_size, shuffle=False)``;
- ``folder, cached``: ``image_dataset_from_directory(...).cache().prefetch(AUTOTUNE)``, timed on
  the epochs after the first (replayed from memory), plus its first epoch (decoding);
- ``folder, decoded each epoch``: ``image_dataset_from_directory(...).prefetch(AUTOTUNE)``, the
  prefetch thread decoding and resizing the next batches while the model trains on this one.

The folder (JPEGs 320x240 in 4 classes, made by bench_data.make_folder) lives in a temp dir.
Each input gets one warm-up epoch, then `--epochs` timed ones, the inputs taking turns epoch by
epoch (median images/s; the per-epoch time comes from a Callback, so fit's own set-up is not
counted). The issue's target: the folder
loses less than 5% against arrays. `arrays` shuffles nothing, so shuffling costs it nothing.

    PYTHONPATH=. python benchmarks/bench_folder_training.py [--quick] [--images 160] [--size 96]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_data import make_folder  # noqa: E402

import fastconv  # noqa: E402
from fastconv.data import AUTOTUNE, image_dataset_from_directory  # noqa: E402


class EpochTimer(fastconv.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def interleaved_rates(model, n_images, epochs, inputs):
    """{name: (first epoch, median of the later epochs)} in images/s of ``fit`` on each input,
    one epoch of each in turn (round robin), so a change in the machine's load hits all alike."""
    seconds = {name: [] for name in inputs}
    for _ in range(1 + epochs):
        for name, (data, fit_kwargs) in inputs.items():
            timer = EpochTimer()
            model.fit(data, epochs=1, verbose=0, callbacks=[timer], **fit_kwargs)
            seconds[name] += timer.seconds
    return {name: (n_images / s[0], statistics.median(n_images / t for t in s[1:])) for name, s in seconds.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=160, help="images in the folder (a multiple of the batch)")
    p.add_argument("--size", type=int, default=96, help="training image size (square)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per input, after one warm-up")
    p.add_argument("--quick", action="store_true", help="64 images at 64x64, two timed epochs (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.size, args.epochs = 64, 64, 2
    fastconv.set_seed(0)
    size = (args.size, args.size)
    model = fastconv.applications.ResNet50(weights=None, input_shape=size + (3,), classes=4)
    model.compile(fastconv.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    root = tempfile.mkdtemp(prefix="bench_folder_training_")
    try:
        make_folder(root, args.images)

        def folder():
            return image_dataset_from_directory(root, image_size=size, batch_size=args.batch, seed=1,
                                                verbose=False)
        # the arrays: the very images the folder pipeline yields (decoded and resized once)
        batches = list(folder())
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        model.train_on_batch(x[:args.batch], y[:args.batch])  # builds the model and its buffers
        rows = interleaved_rates(model, len(x), args.epochs, {
            "arrays": (x, dict(y=y, batch_size=args.batch, shuffle=False)),
            "folder, cached": (folder().cache().prefetch(AUTOTUNE), {}),
            "folder, decoded each epoch": (folder().prefetch(AUTOTUNE), {}),
        })
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"ResNet-50 (weights=None) training, {len(x)} JPEGs 320x240 -> {args.size}x{args.size}, batch "
          f"{args.batch}, {fastconv.get_num_threads()} threads; images/s, median of {args.epochs} epoch(s) "
          "after a warm-up one")
    base = rows["arrays"][1]
    print(f"{'input':<28} {'first epoch':>12} {'later epochs':>13} {'vs arrays':>10}")
    for name, (first, later) in rows.items():
        print(f"{name:<28} {first:>12.1f} {later:>13.1f} {100 * (later / base - 1):>+9.1f}%")
    return rows


if __name__ == "__main__":
    main()
