"""Data adapters for the loop: NumPy arrays (or lists/tuples/dicts of them, for several
inputs), :class:`fastconv.data.Dataset` objects and other iterables yielding batches.

Arrays are cut into batches of `batch_size` in order, the partial last batch kept; with
shuffle, each epoch draws a fresh permutation from `fastconv.random.generator("shuffle")`
(so `fastconv.set_seed` fixes the batch order). An iterable (generator, list of batches,
Keras-Sequence-like object with __len__/__getitem__) yields `x`, `(x,)`, `(x, y)` or
`(x, y, sample_weight)` per batch; only tuples are unpacked (a list is multi-input x, as in
Keras); such data is used in the order it comes (shuffle does not apply). `validation_split`
keeps the LAST fraction of the arrays for validation (before any shuffling), as Keras does.
On the cuda backend, arrays are copied to the GPU once when they fit (see
`stage_on_device`), so a training step copies no data.
"""
import math

import numpy as np

from ..backend import get_backend
from ..functional import array_module, is_device_array
from .batching import batch_bounds, check_batch_size, epoch_order
from .dataset import INFINITE_CARDINALITY, Dataset
from .structure import leaves, map_structure  # noqa: F401 (re-exported for the loop)


def _is_array(a):
    return hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "__getitem__")


def is_array_data(x):
    """True for an array or a (nested) list/tuple/dict whose leaves are all arrays."""
    if _is_array(x):
        return True
    if isinstance(x, dict):
        ls = leaves(x)
        return bool(ls) and all(_is_array(a) for a in ls)
    if isinstance(x, (list, tuple)):
        # Multi-input x is a list of arrays (or dicts of them); a list of tuples is a list
        # of (x, y) batches.
        return bool(x) and all(_is_array(a) or (isinstance(a, dict) and is_array_data(a)) for a in x)
    return False


def _host(a):
    if hasattr(a, "requires_grad") and hasattr(a, "data"):  # an autograd Tensor
        return a.data
    return a


def unpack(batch):
    """(x, y, sample_weight) from one batch of an iterable."""
    if isinstance(batch, tuple):
        if not 1 <= len(batch) <= 3:
            raise ValueError(f"a data batch must be x, (x,), (x, y) or (x, y, sample_weight); got a "
                             f"tuple of {len(batch)} elements")
        return tuple(batch) + (None,) * (3 - len(batch))
    return batch, None, None


def num_samples(x, y=None, sample_weight=None):
    """The common first dimension of every array; ValueError naming the lengths otherwise."""
    sizes = {}
    for name, s in (("x", x), ("y", y), ("sample_weight", sample_weight)):
        for a in leaves(s):
            if not getattr(a, "shape", ()):
                raise ValueError(f"{name} must have a batch (first) dimension, got a scalar")
            sizes.setdefault(name, set()).add(int(a.shape[0]))
    for name, ns in sizes.items():
        if len(ns) > 1:
            raise ValueError(f"the arrays in {name} have different numbers of samples: {sorted(ns)}")
    lengths = {name: ns.pop() for name, ns in sizes.items()}
    n = lengths["x"]
    for name, m in lengths.items():
        if m != n:
            raise ValueError(f"x has {n} samples but {name} has {m}; they must have the same length")
    return n


def train_validation_split(arrays, validation_split):
    """Split (x, y, sample_weight) at floor(n * (1 - validation_split)): the last part validates."""
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    n = num_samples(*arrays)
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError(f"validation_split={validation_split} of {n} samples leaves "
                         f"{split_at} for training and {n - split_at} for validation; both must be non-empty")
    train = tuple(map_structure(lambda a: a[:split_at], s) for s in arrays)
    val = tuple(map_structure(lambda a: a[split_at:], s) for s in arrays)
    return train, val


def stage_on_device(arrays, fraction=0.25):
    """On the cuda backend, host arrays move to the GPU once, when together they take at most
    `fraction` of its free memory; larger data stays on the host and each batch is copied
    when it is used."""
    from .. import cuda
    host = [a for a in leaves(arrays) if not is_device_array(a)]
    if not host or sum(np.asarray(a).nbytes for a in host) > fraction * cuda.free_memory():
        return arrays
    return map_structure(lambda a: a if is_device_array(a) else cuda.to_device(a), arrays)


class ArrayAdapter:
    def __init__(self, x, y=None, sample_weight=None, batch_size=32, shuffle=False):
        batch_size = check_batch_size(batch_size)
        self.x, self.y, self.sw = (map_structure(_host, s) for s in (x, y, sample_weight))
        if get_backend() == "cuda":
            self.x, self.y, self.sw = stage_on_device((self.x, self.y, self.sw))
        self.n = num_samples(self.x, self.y, self.sw)
        if self.n == 0:
            raise ValueError("x has 0 samples; nothing to iterate over")
        self.batch_size, self.shuffle = int(batch_size), shuffle
        self.steps = math.ceil(self.n / self.batch_size)

    def epoch(self):
        order = epoch_order(self.n, self.shuffle)
        if order is not None:
            # Sorted indices read memory in order; the batch content is still random.
            for start, end in batch_bounds(self.n, self.batch_size):
                order[start:end].sort()
        # Device arrays are indexed with device indices, uploaded once per epoch.
        device = next((a for a in leaves((self.x, self.y, self.sw)) if is_device_array(a)), None)
        device_order = None if order is None or device is None else array_module(device).asarray(order)
        for start, end in batch_bounds(self.n, self.batch_size):
            sel = slice(start, end) if order is None else order[start:end]
            dsel = sel if device_order is None else device_order[start:end]
            yield tuple(map_structure(lambda a: a[dsel if is_device_array(a) else sel], s)
                        for s in (self.x, self.y, self.sw))


class IterableAdapter:
    def __init__(self, data):
        self.data = data
        self._sequence = hasattr(data, "__getitem__") and hasattr(data, "__len__") and not hasattr(data, "__next__")
        self.steps = len(data) if hasattr(data, "__len__") else None
        # A one-shot iterator (generator) cannot be restarted: later epochs continue it.
        self.one_shot = iter(data) is data if not self._sequence else False
        self._it = None

    def _fresh(self):
        if self._sequence:
            return (self.data[i] for i in range(len(self.data)))
        return iter(self.data)

    def epoch(self):
        it = self._it if self.one_shot and self._it is not None else self._fresh()
        if self.one_shot:
            self._it = it
        for batch in it:
            yield unpack(batch)
        end = getattr(self.data, "on_epoch_end", None)
        if self._sequence and callable(end):
            end()


class DatasetAdapter:
    """A :class:`fastconv.data.Dataset` of batches: a fresh pass each epoch; its elements are
    x, (x,), (x, y) or (x, y, sample_weight) as for any iterable. An infinite dataset needs
    `steps` (steps_per_epoch / validation_steps / steps), as in Keras."""
    one_shot = False

    def __init__(self, dataset, steps=None, name="x"):
        n = dataset._cardinality()
        if n == INFINITE_CARDINALITY and steps is None:
            raise ValueError(f"{name} is an infinite Dataset (after repeat()); pass the number of batches "
                             "per epoch (steps_per_epoch, validation_steps or steps)")
        self.data = dataset
        self.steps = n if n >= 0 else None

    def epoch(self):
        for batch in self.data:
            yield unpack(batch)


class EpochIterator:
    """Batches per epoch: a full pass over the data, or exactly `steps` batches when given
    (arrays are re-passed, with a new shuffle, as often as needed; a one-shot iterable that
    runs dry ends the epoch early and sets `exhausted`)."""

    def __init__(self, adapter, steps=None):
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
            raise ValueError(f"steps must be a positive int or None, got {steps!r}")
        self.adapter, self.fixed_steps = adapter, steps
        self.steps = steps if steps is not None else adapter.steps
        self._stream = None
        self.exhausted = False

    def _endless(self):
        while True:
            got = False
            for batch in self.adapter.epoch():
                got = True
                yield batch
            if not got or getattr(self.adapter, "one_shot", False):
                return

    def __iter__(self):
        if self.fixed_steps is None:
            yield from self.adapter.epoch()
            return
        if self._stream is None:
            self._stream = self._endless()
        for _ in range(self.fixed_steps):
            try:
                yield next(self._stream)
            except StopIteration:
                self.exhausted = True
                return


def make_iterator(x, y=None, sample_weight=None, batch_size=None, shuffle=False, steps=None, name="x"):
    if x is None:
        raise ValueError(f"{name} is required (arrays or an iterable of batches), got None")
    if isinstance(x, Dataset):
        if y is not None or sample_weight is not None:
            raise ValueError(f"y and sample_weight must be None when {name} is a Dataset; its elements "
                             "carry them as (x, y) or (x, y, sample_weight)")
        return EpochIterator(DatasetAdapter(x, steps, name), steps)
    if is_array_data(x):
        bs = 32 if batch_size is None else batch_size
        return EpochIterator(ArrayAdapter(x, y, sample_weight, bs, shuffle), steps)
    if isinstance(x, (str, bytes)) or not (hasattr(x, "__iter__") or hasattr(x, "__getitem__")):
        raise TypeError(f"{name} must be a numpy array, a list/tuple/dict of arrays or an iterable of "
                        f"batches, got {type(x).__name__}")
    if isinstance(x, (list, tuple)) and x and all(np.isscalar(v) for v in x):
        return EpochIterator(ArrayAdapter(np.asarray(x), y, sample_weight, batch_size or 32, shuffle), steps)
    if y is not None or sample_weight is not None:
        raise ValueError("y and sample_weight must be None when x is an iterable of batches; "
                         "yield (x, y) or (x, y, sample_weight) from it instead")
    return EpochIterator(IterableAdapter(x), steps)
