"""CIFAR-10 (Krizhevsky 2009): 60,000 32x32 colour images in 10 classes.

``load_data(path=None)`` returns ``((x_train, y_train), (x_test, y_test))`` as Keras does:
uint8 images (50000, 32, 32, 3) and (10000, 32, 32, 3), uint8 labels (50000, 1) and (10000, 1).
Read offline from Keras's cache (``~/.keras/datasets/cifar-10-batches-py``), the python or
binary tarball, or their folders; see :mod:`fastconv.datasets._cifar` for the places searched
and why the pickled batches are safe to read.
"""
import numpy as np

from . import _cifar

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
LAYOUT = _cifar.Layout(
    name="cifar10", py_dir="cifar-10-batches-py", py_tar="cifar-10-python.tar.gz",
    py_train=tuple(f"data_batch_{i}" for i in range(1, 6)), py_test=("test_batch",),
    bin_dir="cifar-10-batches-bin", bin_tar="cifar-10-binary.tar.gz",
    bin_train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)), bin_test=("test_batch.bin",))


def load_data(path=None):
    """Load CIFAR-10; `path` is a directory holding one of the layouts above."""
    (x_train, y_train), (x_test, y_test) = _cifar.load(LAYOUT, path, "labels", 1, 0, 10)
    return (x_train, y_train.astype(np.uint8)), (x_test, y_test.astype(np.uint8))
