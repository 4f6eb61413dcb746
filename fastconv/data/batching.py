"""Batching and shuffling of in-memory arrays: the ONE path that ``fit``'s array adapter,
:class:`BatchLoader` and ``Dataset.from_tensor_slices(...).shuffle(...).batch(...)`` share.

:func:`epoch_order` draws the permutation of an epoch; :func:`batch_bounds` and
:func:`batch_selections` cut an order into per-batch index selections (contiguous slices when
not shuffled, so taking a batch copies nothing).

>>> import numpy as np, fastconv
>>> fastconv.set_seed(0)
>>> loader = BatchLoader(np.arange(10), np.arange(10) % 2, batch_size=4, shuffle=False)
>>> [xb.tolist() for xb, yb in loader]
[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
>>> len(loader), len(BatchLoader(np.arange(10), None, batch_size=4, drop_remainder=True))
(3, 2)
"""
import numpy as np

from .. import random as _random
from .prefetch import Prefetcher


def check_batch_size(batch_size, name="batch_size"):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{name} must be a positive int, got {batch_size!r}")
    return int(batch_size)


def num_batches(n, batch_size, drop_remainder=False):
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_order(n, shuffle, rng=None):
    """None (in order) or a permutation of range(n) drawn from `rng` (default: the seeded
    ``fastconv.random.generator("shuffle")`` stream, so ``fastconv.set_seed`` repeats it)."""
    if not shuffle:
        return None
    rng = rng if rng is not None else _random.generator("shuffle")
    return rng.permutation(n)


def batch_bounds(n, batch_size, drop_remainder=False):
    """Yield (start, end) of each batch's positions in the epoch order."""
    for i in range(num_batches(n, batch_size, drop_remainder)):
        yield i * batch_size, min((i + 1) * batch_size, n)


def batch_selections(n, batch_size, order=None, drop_remainder=False):
    """Yield the index selection of each batch: slices for ``order=None``, else index arrays
    cut from `order`."""
    for start, end in batch_bounds(n, batch_size, drop_remainder):
        if order is None:
            yield slice(start, end)
        else:
            yield order[start:end]


class BatchLoader:
    """Iterate over ``(xb, yb)`` mini-batches of `x` and `y` (``yb`` is None when `y` is None).

    x, y: arrays with the same first dimension (y may be None).
    batch_size: images per batch.
    shuffle: a new permutation each epoch (each ``iter()``), see :func:`epoch_order`; `rng`
        replaces the shared stream.
    drop_remainder: the last partial batch (``len(x) % batch_size`` samples) is yielded,
        smaller, when False (the default, as Keras); it is skipped when True.
    prefetch: gather the next batch on a background thread while the caller trains on the
        current one (the fancy-indexing copy releases the GIL for large arrays).
    transform: optional ``f(xb, yb) -> (xb, yb)`` applied to each batch (e.g. augmentation),
        on the prefetch thread when prefetching.
    """

    def __init__(self, x, y=None, batch_size=32, shuffle=True, drop_remainder=False,
                 prefetch=False, transform=None, rng=None):
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("x must have a batch dimension, got a scalar")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or len(y) != len(x):
                raise ValueError(f"x and y must have the same number of samples, got x {x.shape} "
                                 f"and y {y.shape}")
        self.batch_size = check_batch_size(batch_size)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.x, self.y = x, y
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        self.prefetch = bool(prefetch)
        self.transform = transform
        self._rng = rng

    def __len__(self):
        return num_batches(len(self.x), self.batch_size, self.drop_remainder)

    def _batches(self, order):
        for sel in batch_selections(len(self.x), self.batch_size, order, self.drop_remainder):
            xb = self.x[sel]
            yb = None if self.y is None else self.y[sel]
            if self.transform is not None:
                xb, yb = self.transform(xb, yb)
            yield xb, yb

    def __iter__(self):
        # the permutation is drawn here, on the caller's thread, so the stream's state does not
        # depend on thread timing
        order = epoch_order(len(self.x), self.shuffle, self._rng)
        if not self.prefetch:
            return self._batches(order)
        return Prefetcher(self._batches(order))


_Prefetcher = Prefetcher  # the old private name (image_dataset used it)
