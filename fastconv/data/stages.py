"""The stages of a :class:`~fastconv.data.Dataset` pipeline: sources (tensor slices, a
generator, zip) and transformations (map, filter, batch, unbatch, shuffle, cache, prefetch,
repeat, take, skip). Each defines ``_iterate()`` (a fresh iterator; eager set-up such as the
shuffle's seed for the pass happens there, on the caller's thread) and ``_cardinality()``
(tf.data's rules). Users reach them through the Dataset methods, never directly.
"""
import itertools

import numpy as np

from .. import random as _random
from . import cache as _cache
from .batching import batch_selections, num_batches
from .dataset import (INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Dataset, TensorSpec, _as_leaf,
                      _call)
from .parallel import ordered_map
from .prefetch import Prefetcher
from .structure import leaves, map_structure, zip_structures


class TensorSlices(Dataset):
    def __init__(self, tensors):
        super().__init__()
        if isinstance(tensors, list):
            tensors = np.asarray(tensors)
        self.tensors = map_structure(lambda a: _as_leaf(a, "from_tensor_slices"), tensors)
        arrays = leaves(self.tensors)
        if not arrays:
            raise ValueError("from_tensor_slices needs at least one array")
        for a in arrays:
            if a.ndim == 0:
                raise ValueError(f"from_tensor_slices needs arrays with a first dimension to slice, got a "
                                 f"scalar (shape {a.shape})")
        sizes = sorted({len(a) for a in arrays})
        if len(sizes) > 1:
            raise ValueError(f"from_tensor_slices: every array must have the same first dimension, got "
                             f"shapes {[a.shape for a in arrays]}")
        self.n = sizes[0]

    def _cardinality(self):
        return self.n

    def gather(self, sel):
        return map_structure(lambda a: a[sel], self.tensors)

    def _iterate(self):
        return (self.gather(i) for i in range(self.n))


class Generator(Dataset):
    def __init__(self, generator, signature):
        super().__init__()
        self.generator, self.signature = generator, signature

    def _iterate(self):
        it = iter(self.generator())
        if self.signature is None:
            return (map_structure(np.asarray, e) for e in it)
        dtypes = [s.dtype for s in _spec_leaves(self.signature)]

        def cast(e):
            values = leaves(e)
            if len(values) != len(dtypes):
                raise ValueError(f"from_generator: an element has {len(values)} leaves, output_signature "
                                 f"describes {len(dtypes)}")
            casts = iter(np.asarray(v, d) for v, d in zip(values, dtypes))
            return map_structure(lambda _: next(casts), e)
        return (cast(e) for e in it)


def _spec_leaves(signature):
    if isinstance(signature, TensorSpec):
        return [signature]
    if isinstance(signature, (tuple, list)):
        return [s for v in signature for s in _spec_leaves(v)]
    if isinstance(signature, dict):
        return [s for v in signature.values() for s in _spec_leaves(v)]
    raise TypeError(f"output_signature must be a structure of TensorSpec, got {type(signature).__name__}")


class Zip(Dataset):
    def __init__(self, datasets):
        super().__init__()
        self.datasets = datasets

    def _cardinality(self):
        ns = [d._cardinality() for d in self.datasets]
        finite = [n for n in ns if n >= 0]
        if finite:
            return min(finite)
        return UNKNOWN_CARDINALITY if UNKNOWN_CARDINALITY in ns else INFINITE_CARDINALITY

    def _iterate(self):
        return zip(*[d._iterate() for d in self.datasets])


class Map(Dataset):
    def __init__(self, parent, fn, workers):
        super().__init__(parent)
        self.fn, self.workers = fn, workers

    def _cardinality(self):
        return self._parent._cardinality()

    def _iterate(self):
        source = self._parent._iterate()
        if self.workers is None:
            return (_call(self.fn, e) for e in source)
        return ordered_map(lambda e: _call(self.fn, e), source, self.workers)


class Filter(Dataset):
    _keeps_element_shape = True

    def __init__(self, parent, predicate):
        super().__init__(parent)
        self.predicate = predicate

    def _iterate(self):
        return (e for e in self._parent._iterate() if _call(self.predicate, e))


def _stack(values):
    try:
        return np.stack([np.asarray(v) for v in values])
    except ValueError:
        shapes = sorted({np.shape(v) for v in values})
        raise ValueError(f"batch: the elements have different shapes {shapes}; resize or pad them "
                         "to one shape first") from None


class Batch(Dataset):
    def __init__(self, parent, batch_size, drop_remainder):
        super().__init__(parent)
        self.batch_size, self.drop_remainder = batch_size, drop_remainder

    def _cardinality(self):
        n = self._parent._cardinality()
        return n if n < 0 else num_batches(n, self.batch_size, self.drop_remainder)

    def _iterate(self):
        parent = self._parent
        # Arrays in memory take the shared batching path: one gather per batch, no per-element
        # Python work (contiguous slices when in order).
        if isinstance(parent, TensorSlices):
            return self._gather(parent, None)
        if isinstance(parent, Shuffle) and isinstance(parent._parent, TensorSlices) \
                and parent.buffer_size >= parent._parent.n:
            return self._gather(parent._parent, parent.rng_for_pass().permutation(parent._parent.n))
        return self._stacked(parent._iterate())

    def _gather(self, slices, order):
        for sel in batch_selections(slices.n, self.batch_size, order, self.drop_remainder):
            yield slices.gather(sel)

    def _stacked(self, source):
        while True:
            chunk = list(itertools.islice(source, self.batch_size))
            if not chunk or (self.drop_remainder and len(chunk) < self.batch_size):
                return
            yield zip_structures(_stack, chunk)


class Unbatch(Dataset):
    def _iterate(self):
        for element in self._parent._iterate():
            arrays = [np.asarray(a) for a in leaves(element)]
            if any(a.ndim == 0 for a in arrays):
                raise ValueError("unbatch: every element must have a batch (first) dimension, got a scalar")
            n = len(arrays[0]) if arrays else 0
            for i in range(n):
                yield map_structure(lambda a: np.asarray(a)[i], element)


class Shuffle(Dataset):
    _keeps_element_shape = True

    def __init__(self, parent, buffer_size, seed, reshuffle):
        super().__init__(parent)
        self.buffer_size, self.seed, self.reshuffle = buffer_size, seed, reshuffle
        self._passes = 0
        # without a seed and without reshuffling, the one order is fixed now (as tf.data does)
        self._fixed = None if seed is not None or reshuffle else int(_random.generator("shuffle").integers(2 ** 63))

    def _cardinality(self):
        return self._parent._cardinality()

    def rng_for_pass(self):
        """The Generator of the next pass, drawn on the caller's thread."""
        if self.seed is None:
            base = self._fixed if self._fixed is not None else int(_random.generator("shuffle").integers(2 ** 63))
            return np.random.default_rng(base)
        k = self._passes if self.reshuffle else 0
        self._passes += 1
        return np.random.default_rng([self.seed, k])

    def _iterate(self):
        return self._shuffled(self._parent._iterate(), self.rng_for_pass())

    def _shuffled(self, source, rng):
        buffer = list(itertools.islice(source, self.buffer_size))
        if len(buffer) < self.buffer_size:  # all the data fits: a plain permutation
            for i in rng.permutation(len(buffer)):
                yield buffer[i]
            return
        for element in source:
            i = int(rng.integers(len(buffer)))
            yield buffer[i]
            buffer[i] = element
        for i in rng.permutation(len(buffer)):
            yield buffer[i]


class Cache(Dataset):
    _keeps_element_shape = True

    def __init__(self, parent, filename):
        super().__init__(parent)
        self.store = _cache.FileCache(filename) if filename else _cache.MemoryCache()

    def _cardinality(self):
        return self._parent._cardinality()

    def _iterate(self):
        return self.store.iterate(self._parent._iterate)


class Prefetch(Dataset):
    _keeps_element_shape = True

    def __init__(self, parent, depth):
        super().__init__(parent)
        self.depth = depth

    def _cardinality(self):
        return self._parent._cardinality()

    def _iterate(self):
        return self._prefetched(Prefetcher(self._parent._iterate(), self.depth))

    @staticmethod
    def _prefetched(prefetcher):
        try:
            yield from prefetcher
        finally:  # the consumer stopped (or finished): stop the thread now
            prefetcher.close()


class Repeat(Dataset):
    _keeps_element_shape = True

    def __init__(self, parent, count):
        super().__init__(parent)
        self.count = count

    def _cardinality(self):
        n = self._parent._cardinality()
        if self.count < 0:
            return 0 if n == 0 else INFINITE_CARDINALITY
        return n if n < 0 else n * self.count

    def _iterate(self):
        passes = itertools.count() if self.count < 0 else range(self.count)
        return self._repeated(passes)

    def _repeated(self, passes):
        for _ in passes:
            got = False
            for element in self._parent._iterate():
                got = True
                yield element
            if not got:  # an empty input repeated forever is still empty, not a hang
                return


class Take(Dataset):
    _keeps_element_shape = True

    def __init__(self, parent, count):
        super().__init__(parent)
        self.count = count

    def _cardinality(self):
        n = self._parent._cardinality()
        if self.count < 0:
            return n
        if n == INFINITE_CARDINALITY:
            return self.count
        return n if n == UNKNOWN_CARDINALITY else min(n, self.count)

    def _iterate(self):
        source = self._parent._iterate()
        return source if self.count < 0 else _closing_islice(source, self.count)


def _closing_islice(source, count):
    try:
        yield from itertools.islice(source, count)
    finally:  # stop upstream threads as soon as the last element is taken
        close = getattr(source, "close", None)
        if close is not None:
            close()


class Skip(Dataset):
    _keeps_element_shape = True

    def __init__(self, parent, count):
        super().__init__(parent)
        self.count = count

    def _cardinality(self):
        n = self._parent._cardinality()
        if n < 0:
            return n
        return 0 if self.count < 0 else max(0, n - self.count)

    def _iterate(self):
        source = self._parent._iterate()
        if self.count < 0:
            return (e for e in source if False)  # drains the input lazily, yields nothing
        return itertools.islice(source, self.count, None)
