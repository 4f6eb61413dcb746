"""``fastconv.data.Dataset``: an input pipeline in the shape of ``tf.data.Dataset``.

A Dataset is a re-iterable description of a stream of elements; each element is a NumPy
array, a NumPy scalar, or a tuple/dict of them. Methods return new Datasets, and every
``iter()`` starts a fresh pass (an epoch). Semantics follow tf.data:

- ``shuffle(buffer_size)`` keeps a buffer of that many elements and yields a uniformly drawn
  one, refilling from the input: a buffer at least as large as the data gives a full
  permutation, a small one only mixes nearby elements. A new order each pass unless
  ``reshuffle_each_iteration=False``. Without a `seed`, orders come from
  ``fastconv.random.generator("shuffle")``, so ``fastconv.set_seed`` repeats them.
- ``cache()`` before ``shuffle`` caches once and reshuffles every pass; after it, the first
  pass's order is replayed.
- ``cardinality()``: the number of elements, ``INFINITE_CARDINALITY`` (-1) after ``repeat()``,
  ``UNKNOWN_CARDINALITY`` (-2) after ``filter``/``unbatch``/``from_generator``; ``len()`` raises
  TypeError for those two, as tf.data does.
- ``map(fn)`` calls ``fn(*element)`` for a tuple element and ``fn(element)`` otherwise; with
  ``num_parallel_calls`` (an int, or ``AUTOTUNE`` for one thread per CPU) it runs on a thread
  pool and keeps the input order. Use it for work that releases the GIL (decoding, NumPy).
- ``prefetch(n)`` runs everything upstream on a background thread, at most `n` elements ahead.

>>> import numpy as np
>>> ds = Dataset.from_tensor_slices((np.arange(6), np.arange(6) * 10))
>>> [(int(x), int(y)) for x, y in ds.skip(1).take(2)]
[(1, 10), (2, 20)]
>>> [b[0].tolist() for b in ds.batch(4)]
[[0, 1, 2, 3], [4, 5]]
>>> len(ds.batch(4, drop_remainder=True)), int(ds.repeat().cardinality())
(1, -1)
"""
import collections
import itertools

import numpy as np

from .. import random as _random
from . import cache as _cache
from .batching import batch_selections, check_batch_size, num_batches
from .parallel import default_workers, ordered_map
from .prefetch import Prefetcher
from .structure import leaves, map_structure, zip_structures

AUTOTUNE = -1
INFINITE_CARDINALITY = -1
UNKNOWN_CARDINALITY = -2


class Cardinality(int):
    """An int that also answers ``.numpy()`` (tf code writes ``ds.cardinality().numpy()``)."""

    def numpy(self):
        return int(self)


class TensorSpec(collections.namedtuple("TensorSpec", "shape dtype")):
    """The shape (None where it varies) and dtype of one leaf of an element."""


def _spec_of(value):
    a = np.asarray(value)
    return TensorSpec(tuple(a.shape), a.dtype)


def _count_arg(name, value, allow_negative=True):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not allow_negative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def _as_leaf(a, name):
    a = np.asarray(a)
    if a.dtype == object:
        raise TypeError(f"{name}: arrays of numbers, booleans or strings are supported; got an object array")
    return a


def _call(fn, element):
    return fn(*element) if isinstance(element, tuple) else fn(element)


class Dataset:
    """Base of every pipeline stage. Build one with :meth:`from_tensor_slices`,
    :meth:`from_generator`, :meth:`range` or :meth:`zip`, then chain the methods."""

    def __init__(self, parent=None):
        self._parent = parent

    # -- what each stage defines --------------------------------------------------------
    def _iterate(self):
        """A fresh iterator over the elements (eager set-up here, on the caller's thread)."""
        raise NotImplementedError

    def _cardinality(self):
        return UNKNOWN_CARDINALITY

    # -- sources --------------------------------------------------------------------------
    @staticmethod
    def from_tensor_slices(tensors):
        """One element per index of the first dimension of `tensors` (an array, or a
        tuple/dict of arrays with the same first dimension; a list is one array, as in tf)."""
        return _TensorSlices(tensors)

    @staticmethod
    def from_generator(generator, output_signature=None):
        """Elements from ``generator()`` (a callable returning an iterator, called anew each
        pass). output_signature: optional structure of TensorSpec whose dtypes the leaves are
        cast to."""
        if not callable(generator):
            raise TypeError(f"from_generator needs a callable returning an iterator, got {type(generator).__name__}")
        return _Generator(generator, output_signature)

    @staticmethod
    def range(*args):
        """Like Python's range(start, stop, step), as int64 scalars."""
        return _TensorSlices(np.arange(*args, dtype=np.int64))

    @staticmethod
    def zip(*datasets):
        """Tuples of the datasets' elements, ending with the shortest (tf: Dataset.zip)."""
        if len(datasets) == 1 and isinstance(datasets[0], (tuple, list)):
            datasets = tuple(datasets[0])
        for d in datasets:
            if not isinstance(d, Dataset):
                raise TypeError(f"Dataset.zip takes Datasets, got {type(d).__name__}")
        return _Zip(datasets)

    # -- transformations ------------------------------------------------------------------
    def map(self, map_func, num_parallel_calls=None, deterministic=None):
        """Apply `map_func` to every element (see the module doc); results keep input order."""
        if not callable(map_func):
            raise TypeError(f"map_func must be callable, got {type(map_func).__name__}")
        if num_parallel_calls is not None:
            num_parallel_calls = _count_arg("num_parallel_calls", num_parallel_calls)
            if num_parallel_calls == AUTOTUNE:
                num_parallel_calls = default_workers()
            elif num_parallel_calls < 1:
                raise ValueError(f"num_parallel_calls must be a positive int or AUTOTUNE, got {num_parallel_calls}")
        return _Map(self, map_func, num_parallel_calls)

    def filter(self, predicate):
        """Keep the elements for which ``predicate(*element)`` is true."""
        if not callable(predicate):
            raise TypeError(f"predicate must be callable, got {type(predicate).__name__}")
        return _Filter(self, predicate)

    def batch(self, batch_size, drop_remainder=False):
        """Stack `batch_size` consecutive elements leaf by leaf (the last batch may be smaller
        unless `drop_remainder`). Elements of different shapes raise ValueError."""
        return _Batch(self, check_batch_size(batch_size), bool(drop_remainder))

    def unbatch(self):
        """Split every element along its first dimension (inverse of batch)."""
        return _Unbatch(self)

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True):
        """Shuffle with a buffer of `buffer_size` elements (see the module doc)."""
        buffer_size = _count_arg("buffer_size", buffer_size)
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        if seed is not None:
            seed = _count_arg("seed", seed, allow_negative=False)
        return _Shuffle(self, buffer_size, seed, bool(reshuffle_each_iteration))

    def cache(self, filename=""):
        """Keep the first complete pass in memory (``filename=""``) or in files
        ``<filename>.*`` (see :mod:`fastconv.data.cache`) and replay it afterwards."""
        return _Cache(self, filename)

    def prefetch(self, buffer_size=AUTOTUNE):
        """Make up to `buffer_size` elements ahead on a background thread (AUTOTUNE: 2)."""
        buffer_size = _count_arg("buffer_size", buffer_size)
        if buffer_size == AUTOTUNE:
            buffer_size = 2
        if buffer_size < 0:
            raise ValueError(f"buffer_size must be >= 0 or AUTOTUNE, got {buffer_size}")
        return _Prefetch(self, buffer_size) if buffer_size else self

    def repeat(self, count=None):
        """Repeat the data `count` times (None or -1: forever)."""
        count = -1 if count is None else _count_arg("count", count)
        return _Repeat(self, count)

    def take(self, count):
        """The first `count` elements (-1: all)."""
        return _Take(self, _count_arg("count", count))

    def skip(self, count):
        """All but the first `count` elements (-1: skip everything)."""
        return _Skip(self, _count_arg("count", count))

    # -- reading --------------------------------------------------------------------------
    def __iter__(self):
        return self._iterate()

    def as_numpy_iterator(self):
        """An iterator over the elements as NumPy values (they already are)."""
        return iter(self)

    def cardinality(self):
        return Cardinality(self._cardinality())

    def __len__(self):
        n = self._cardinality()
        if n == INFINITE_CARDINALITY:
            raise TypeError("The dataset is infinite.")
        if n == UNKNOWN_CARDINALITY:
            raise TypeError("The dataset length is unknown.")
        return n

    def __bool__(self):  # len() may raise; a Dataset object is always truthy
        return True

    @property
    def element_spec(self):
        """TensorSpec(shape, dtype) per leaf, in the element's structure. Read from the first
        element of a fresh pass (lite: no tracing); batch stages mark the batch dimension
        None unless drop_remainder."""
        it = iter(self)
        try:
            first = next(it)
        except StopIteration:
            raise ValueError("element_spec of an empty dataset is not known") from None
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        stage = self
        while isinstance(stage, (_Prefetch, _Cache, _Repeat, _Take, _Skip, _Shuffle)):
            stage = stage._parent
        unknown_batch = isinstance(stage, _Batch) and not stage.drop_remainder

        def spec(value):
            s = _spec_of(value)
            return TensorSpec((None,) + s.shape[1:], s.dtype) if unknown_batch else s
        return map_structure(spec, first)

    def __repr__(self):
        n = self._cardinality()
        size = {INFINITE_CARDINALITY: "infinite", UNKNOWN_CARDINALITY: "unknown"}.get(n, n)
        return f"<{type(self).__name__.lstrip('_')}Dataset cardinality={size}>"


class _TensorSlices(Dataset):
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


class _Generator(Dataset):
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


class _Zip(Dataset):
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


class _Map(Dataset):
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


class _Filter(Dataset):
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


class _Batch(Dataset):
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
        if isinstance(parent, _TensorSlices):
            return self._gather(parent, None)
        if isinstance(parent, _Shuffle) and isinstance(parent._parent, _TensorSlices) \
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


class _Unbatch(Dataset):
    def _iterate(self):
        for element in self._parent._iterate():
            arrays = [np.asarray(a) for a in leaves(element)]
            if any(a.ndim == 0 for a in arrays):
                raise ValueError("unbatch: every element must have a batch (first) dimension, got a scalar")
            n = len(arrays[0]) if arrays else 0
            for i in range(n):
                yield map_structure(lambda a: np.asarray(a)[i], element)


class _Shuffle(Dataset):
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


class _Cache(Dataset):
    def __init__(self, parent, filename):
        super().__init__(parent)
        self.store = _cache.FileCache(filename) if filename else _cache.MemoryCache()

    def _cardinality(self):
        return self._parent._cardinality()

    def _iterate(self):
        return self.store.iterate(self._parent._iterate)


class _Prefetch(Dataset):
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


class _Repeat(Dataset):
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


class _Take(Dataset):
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


class _Skip(Dataset):
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
