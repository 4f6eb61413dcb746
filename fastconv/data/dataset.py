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

import numpy as np

from .batching import check_batch_size
from .parallel import default_workers
from .structure import map_structure

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


def resolve_parallel_calls(num_parallel_calls):
    """A thread count from a ``num_parallel_calls`` argument (a positive int, or AUTOTUNE for
    one thread per CPU)."""
    n = _count_arg("num_parallel_calls", num_parallel_calls)
    if n == AUTOTUNE:
        return default_workers()
    if n < 1:
        raise ValueError(f"num_parallel_calls must be a positive int or AUTOTUNE, got {n}")
    return n


class Dataset:
    """Base of every pipeline stage. Build one with :meth:`from_tensor_slices`,
    :meth:`from_generator`, :meth:`range` or :meth:`zip`, then chain the methods."""

    # stages that pass elements through unchanged in shape (prefetch, cache, shuffle, ...):
    # element_spec looks through them for the batch stage that decides the batch dimension
    _keeps_element_shape = False

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
        return stages.TensorSlices(tensors)

    @staticmethod
    def from_generator(generator, output_signature=None):
        """Elements from ``generator()`` (a callable returning an iterator, called anew each
        pass). output_signature: optional structure of TensorSpec whose dtypes the leaves are
        cast to."""
        if not callable(generator):
            raise TypeError(f"from_generator needs a callable returning an iterator, got {type(generator).__name__}")
        return stages.Generator(generator, output_signature)

    @staticmethod
    def range(*args):
        """Like Python's range(start, stop, step), as int64 scalars."""
        return stages.TensorSlices(np.arange(*args, dtype=np.int64))

    @staticmethod
    def zip(*datasets):
        """Tuples of the datasets' elements, ending with the shortest (tf: Dataset.zip)."""
        if len(datasets) == 1 and isinstance(datasets[0], (tuple, list)):
            datasets = tuple(datasets[0])
        for d in datasets:
            if not isinstance(d, Dataset):
                raise TypeError(f"Dataset.zip takes Datasets, got {type(d).__name__}")
        return stages.Zip(datasets)

    # -- transformations ------------------------------------------------------------------
    def map(self, map_func, num_parallel_calls=None, deterministic=None):
        """Apply `map_func` to every element (see the module doc); results keep input order."""
        if not callable(map_func):
            raise TypeError(f"map_func must be callable, got {type(map_func).__name__}")
        if num_parallel_calls is not None:
            num_parallel_calls = resolve_parallel_calls(num_parallel_calls)
        return stages.Map(self, map_func, num_parallel_calls)

    def filter(self, predicate):
        """Keep the elements for which ``predicate(*element)`` is true."""
        if not callable(predicate):
            raise TypeError(f"predicate must be callable, got {type(predicate).__name__}")
        return stages.Filter(self, predicate)

    def batch(self, batch_size, drop_remainder=False):
        """Stack `batch_size` consecutive elements leaf by leaf (the last batch may be smaller
        unless `drop_remainder`). Elements of different shapes raise ValueError."""
        return stages.Batch(self, check_batch_size(batch_size), bool(drop_remainder))

    def unbatch(self):
        """Split every element along its first dimension (inverse of batch)."""
        return stages.Unbatch(self)

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True):
        """Shuffle with a buffer of `buffer_size` elements (see the module doc)."""
        buffer_size = _count_arg("buffer_size", buffer_size)
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        if seed is not None:
            seed = _count_arg("seed", seed, allow_negative=False)
        return stages.Shuffle(self, buffer_size, seed, bool(reshuffle_each_iteration))

    def cache(self, filename=""):
        """Keep the first complete pass in memory (``filename=""``) or in files
        ``<filename>.*`` (see :mod:`fastconv.data.cache`) and replay it afterwards."""
        return stages.Cache(self, filename)

    def prefetch(self, buffer_size=AUTOTUNE):
        """Make up to `buffer_size` elements ahead on a background thread (AUTOTUNE: 2)."""
        buffer_size = _count_arg("buffer_size", buffer_size)
        if buffer_size == AUTOTUNE:
            buffer_size = 2
        if buffer_size < 0:
            raise ValueError(f"buffer_size must be >= 0 or AUTOTUNE, got {buffer_size}")
        return stages.Prefetch(self, buffer_size) if buffer_size else self

    def repeat(self, count=None):
        """Repeat the data `count` times (None or -1: forever)."""
        count = -1 if count is None else _count_arg("count", count)
        return stages.Repeat(self, count)

    def take(self, count):
        """The first `count` elements (-1: all)."""
        return stages.Take(self, _count_arg("count", count))

    def skip(self, count):
        """All but the first `count` elements (-1: skip everything)."""
        return stages.Skip(self, _count_arg("count", count))

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
        while stage._keeps_element_shape:
            stage = stage._parent
        unknown_batch = isinstance(stage, stages.Batch) and not stage.drop_remainder

        def spec(value):
            s = _spec_of(value)
            return TensorSpec((None,) + s.shape[1:], s.dtype) if unknown_batch else s
        return map_structure(spec, first)

    def __repr__(self):
        n = self._cardinality()
        size = {INFINITE_CARDINALITY: "infinite", UNKNOWN_CARDINALITY: "unknown"}.get(n, n)
        name = type(self).__name__.lstrip("_")
        return f"<{name if name.endswith('Dataset') else name + 'Dataset'} cardinality={size}>"


# the stages subclass Dataset, so they are imported once it exists
from . import stages  # noqa: E402
