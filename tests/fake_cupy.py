"""A stand-in for CuPy that runs on NumPy, strict where CuPy is strict, and counts the
traffic a GPU would see, so the cuda backend's Python side (training loop included) runs on
the CPU test suite.

Like CuPy: `ndarray` is not a numpy.ndarray; `np.asarray(device_array)` raises TypeError
(implicit conversion); mixing a device array with a numpy.ndarray operand raises TypeError;
reductions and integer indexing give 0-d device arrays, not Python scalars. Counted in
`traffic`: "to_host" for every read that makes the host wait for the device (`.get()`,
`float()`, `int()`, `bool()`, `.item()`, `.tolist()`, format), "to_device" for every copy
of host data onto the device (`asarray(numpy)`, a NumPy index array).

`cupyx.allow_synchronize(False)` is modelled too: a host read inside it raises
DeviceSynchronized. Not modelled: streams, asynchrony itself, memory limits, dtype promotion
differences.
"""
import contextlib
import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

traffic = {"to_host": 0, "to_device": 0}
_sync_allowed = [True]


class DeviceSynchronized(RuntimeError):
    """What cupyx.allow_synchronize(False) raises when the host would wait for the device."""


@contextlib.contextmanager
def allow_synchronize(allow):
    """cupyx.allow_synchronize: inside allow_synchronize(False), a host read raises."""
    before = _sync_allowed[0]
    _sync_allowed[0] = bool(allow)
    try:
        yield
    finally:
        _sync_allowed[0] = before


# The `cupyx` module, as far as the tests use it.
cupyx = types.ModuleType("cupyx")
cupyx.allow_synchronize, cupyx.DeviceSynchronized = allow_synchronize, DeviceSynchronized


def reset_traffic():
    traffic.update(to_host=0, to_device=0)


@contextlib.contextmanager
def counting():
    """Yields a dict with the traffic counted inside the block."""
    before = dict(traffic)
    seen = {}
    try:
        yield seen
    finally:
        seen.update({k: traffic[k] - before[k] for k in traffic})


def _unwrap(a, where):
    if isinstance(a, ndarray):
        return a._a
    if isinstance(a, np.ndarray):
        raise TypeError(f"fake cupy: {where} got a numpy.ndarray operand; CuPy refuses mixing "
                        "host and device arrays (move it with cupy.asarray)")
    if isinstance(a, (list, tuple)):
        return type(a)(_unwrap(v, where) for v in a)
    return a


def _wrap(r):
    if isinstance(r, np.ndarray):
        return ndarray(r)
    if isinstance(r, np.generic) and not isinstance(r, (np.str_, np.bytes_)):
        return ndarray(np.asarray(r))  # CuPy gives 0-d arrays where NumPy gives scalars
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


class _MemoryPointer:
    def __init__(self, a):
        self.ptr = a.ctypes.data  # the host buffer stands in for device memory


class ndarray(NDArrayOperatorsMixin):
    __module__ = "cupy"

    def __init__(self, a):
        self._a = a

    # -- metadata: free on a GPU too --
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    data = property(lambda self: _MemoryPointer(self._a))  # .data.ptr, as CuPy's

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "version": 3}

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"fake_cupy.ndarray(shape={self.shape}, dtype={self.dtype})"

    # -- host reads: each one is a device->host copy that waits for the device --
    def get(self, stream=None, out=None):
        return self._read().copy()

    def _read(self):
        if not _sync_allowed[0]:
            raise DeviceSynchronized("a device-to-host read inside cupyx.allow_synchronize(False)")
        traffic["to_host"] += 1
        return self._a

    def __float__(self):
        return float(self._read())

    def __int__(self):
        return int(self._read())

    def __index__(self):
        return int(self._read())

    def __bool__(self):
        return bool(self._read())

    def item(self):
        return self._read().item()

    def tolist(self):
        return self._read().tolist()

    def __format__(self, spec):
        return format(self._read().item() if self.ndim == 0 else self._read(), spec)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    # -- everything else runs "on the device" --
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"{ufunc.__name__}"
        ins = _unwrap(inputs, where)
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"], where)
        return _wrap(getattr(ufunc, method)(*ins, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        return _call(func, args, kwargs)

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        self._a[_index(key)] = _unwrap(value, "__setitem__")

    def __iter__(self):
        return (_wrap(self._a[i]) for i in range(len(self._a)))

    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__ etc.: NumPy must not see through
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            return _wrap(attr(*_unwrap(args, name), **{k: _unwrap(v, name) for k, v in kwargs.items()}))
        return method

    def astype(self, dtype, copy=True, **kw):
        return ndarray(self._a.astype(dtype, copy=copy))


def _index(key):
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, np.ndarray):  # CuPy copies a host index array to the device
        traffic["to_device"] += 1
    return key


def _call(func, args, kwargs):
    name = getattr(func, "__name__", "function")
    out = func(*_unwrap(args, name), **{k: _unwrap(v, name) for k, v in kwargs.items()})
    return _wrap(out)


# ---- the module namespace ----

def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    traffic["to_device"] += 1
    return ndarray(np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, ndarray):
        return ndarray(np.array(a._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    traffic["to_device"] += 1
    return ndarray(np.array(a, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def ascontiguousarray(a, dtype=None):
    a = asarray(a)
    return ndarray(np.ascontiguousarray(a._a, dtype=dtype))


def asnumpy(a, stream=None):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def get_array_module(*args):
    return __import__(__name__) if any(isinstance(a, ndarray) for a in args) else np


class _Stream:
    ptr = 0

    def synchronize(self):
        pass


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDevice():
        return 0


class _Device:
    def __init__(self, i=0):
        self.id = i
    mem_info = property(lambda self: (8 << 30, 16 << 30))  # (free, total) bytes

    def synchronize(self):
        pass


cuda = types.SimpleNamespace(get_current_stream=lambda: _Stream(), runtime=_Runtime(),
                             Device=_Device, Stream=_Stream)


class _Random:
    def __init__(self, seed=None):
        self._g = np.random.default_rng(seed)

    def permutation(self, n):
        return ndarray(self._g.permutation(n))

    def random(self, size=None, dtype=np.float64):
        return ndarray(self._g.random(size, dtype=dtype))

    def standard_normal(self, size=None, dtype=np.float64):
        return ndarray(self._g.standard_normal(size, dtype=dtype))


random = types.SimpleNamespace(default_rng=lambda seed=None: _Random(seed))


class _UFunc:
    """A ufunc with CuPy's methods (`at` exists in CuPy 13 for add and a few others)."""

    def __init__(self, uf):
        self._uf, self.__name__ = uf, uf.__name__

    def __call__(self, *args, **kwargs):
        return _call(self._uf, args, kwargs)

    def at(self, a, indices, b=None):
        self._uf.at(_unwrap(a, "at"), _index(indices), *([] if b is None else [_unwrap(b, "at")]))

    def reduce(self, a, axis=0, **kwargs):
        return _call(self._uf.reduce, (a,), dict(axis=axis, **kwargs))


def __getattr__(name):
    """cupy.X for any NumPy function / dtype / constant: the NumPy one on device arrays."""
    attr = getattr(np, name)
    if isinstance(attr, np.ufunc):
        return _UFunc(attr)
    if isinstance(attr, type) or not callable(attr):
        return attr

    def fn(*args, **kwargs):
        return _call(attr, args, kwargs)
    fn.__name__ = name
    return fn
