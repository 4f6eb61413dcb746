"""Batch loading: a shuffling, optionally prefetching batch iterator over in-memory arrays.

>>> import numpy as np, fastconv
>>> fastconv.set_seed(0)
>>> loader = BatchLoader(np.arange(10), np.arange(10) % 2, batch_size=4, shuffle=False)
>>> [xb.tolist() for xb, yb in loader]
[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
>>> len(loader), len(BatchLoader(np.arange(10), None, batch_size=4, drop_remainder=True))
(3, 2)
"""
import queue
import threading

import numpy as np

from .. import random as _random


class BatchLoader:
    """Iterate over ``(xb, yb)`` mini-batches of `x` and `y` (``yb`` is None when `y` is None).

    x, y: arrays with the same first dimension (y may be None).
    batch_size: images per batch.
    shuffle: a new permutation each epoch (each ``iter()``), drawn from the seeded
        ``fastconv.random.generator("shuffle")`` stream unless `rng` is given, so
        ``fastconv.set_seed(s)`` repeats the batch order exactly.
    drop_remainder: the last partial batch (``len(x) % batch_size`` samples) is yielded,
        smaller, when False (the default, as Keras); it is skipped when True, so every batch
        has exactly `batch_size` samples.
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
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        self.prefetch = bool(prefetch)
        self.transform = transform
        self._rng = rng

    def __len__(self):
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_remainder else -(-n // b)

    def _order(self):
        n = len(self.x)
        if not self.shuffle:
            return np.arange(n)
        rng = self._rng if self._rng is not None else _random.generator("shuffle")
        return rng.permutation(n)

    def _batches(self, order):
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            if not self.shuffle:  # contiguous slices avoid a copy
                idx = slice(i * self.batch_size, i * self.batch_size + len(idx))
            xb = self.x[idx]
            yb = None if self.y is None else self.y[idx]
            if self.transform is not None:
                xb, yb = self.transform(xb, yb)
            yield xb, yb

    def __iter__(self):
        # the permutation is drawn here, on the caller's thread, so the stream's state does not
        # depend on thread timing
        order = self._order()
        if not self.prefetch:
            return self._batches(order)
        return _Prefetcher(self._batches(order))


class _Prefetcher:
    """Runs a batch generator one step ahead on a daemon thread (queue of size 1)."""
    _DONE = object()

    def __init__(self, gen):
        self._q = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(gen,), daemon=True)
        self._thread.start()

    def _put(self, item):
        # a bounded put that gives up once the consumer has gone away, so the thread never hangs
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, gen):
        try:
            for item in gen:
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as e:  # hand the error to the consumer instead of losing it
            self._put(e)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._q.get()
        if item is self._DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        """Stop the worker early (e.g. when the consumer breaks out of the loop)."""
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass

    def __del__(self):
        self._stop.set()
