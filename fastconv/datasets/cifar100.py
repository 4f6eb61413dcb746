"""CIFAR-100 (Krizhevsky 2009): 60,000 32x32 colour images in 100 fine / 20 coarse classes.

``load_data(label_mode="fine", path=None)`` returns ``((x_train, y_train), (x_test, y_test))``
as Keras does: uint8 images (50000, 32, 32, 3) and (10000, 32, 32, 3), int64 labels (N, 1).
Read offline from Keras's cache (``~/.keras/datasets/cifar-100-python``), the python or binary
tarball, or their folders (:mod:`fastconv.datasets._cifar`).
"""
from . import _cifar

LAYOUT = _cifar.Layout(
    name="cifar100", py_dir="cifar-100-python", py_tar="cifar-100-python.tar.gz",
    py_train=("train",), py_test=("test",),
    bin_dir="cifar-100-binary", bin_tar="cifar-100-binary.tar.gz",
    bin_train=("train.bin",), bin_test=("test.bin",))


def load_data(label_mode="fine", path=None):
    """Load CIFAR-100 with "fine" (100 classes) or "coarse" (20 superclasses) labels."""
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f'label_mode must be "fine" or "coarse", got {label_mode!r}')
    # binary records: coarse label byte, then fine label byte, then the pixels
    index, classes = (1, 100) if label_mode == "fine" else (0, 20)
    return _cifar.load(LAYOUT, path, f"{label_mode}_labels", 2, index, classes)
