"""Data sets: Keras-style ``load_data()`` for MNIST and Fashion-MNIST (found locally or
downloaded and verified), CIFAR-10/100 and MNIST-C (read offline from Keras's cache or the
release files), the embedded UCI digits set (no network needed), and the IDX reader.

>>> from fastconv.datasets import digits
>>> (x, y), _ = digits.load_data(upscale_to=28)
>>> x.shape[1:], int(y.max())
((28, 28), 9)
"""
from . import cifar10, cifar100, digits, fashion_mnist, idx, mnist, mnist_c  # noqa: F401
from .idx import read_idx, write_idx  # noqa: F401
from .._missing import module_getattr  # noqa: E402

__getattr__ = module_getattr(__name__)
