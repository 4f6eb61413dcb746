"""Backend selection: which kernel module `fastconv.functional` dispatches to.

Three backends implement the same low-level kernel interface (DESIGN.md, "Kernel interface"):

- ``"numpy"``: :mod:`fastconv.reference`, the NumPy oracle (float32 or float64).
- ``"cpu"``: ``fastconv._C``, the native C++/OpenMP/OpenBLAS kernels (float32). The default.
- ``"cuda"``: the CUDA kernels on CuPy arrays (:mod:`fastconv.cuda`).

>>> import fastconv
>>> with fastconv.backend("numpy"):
...     fastconv.get_backend()
'numpy'
"""
import contextlib
import contextvars
import enum
import importlib


class Backend(str, enum.Enum):
    NUMPY = "numpy"
    CPU = "cpu"
    CUDA = "cuda"


_current = contextvars.ContextVar("fastconv_backend", default=Backend.CPU)


def _parse(name):
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, one of {[b.value for b in Backend]}, got {type(name).__name__}")
    try:
        return Backend(name.lower())
    except ValueError:
        raise ValueError(f"unknown backend {name!r}; expected one of {[b.value for b in Backend]}") from None


def set_backend(name):
    """Select the backend for all later calls ("numpy", "cpu" or "cuda")."""
    b = _parse(name)
    kernels_for(b)  # fail now, with a clear message, if it is unavailable
    _current.set(b)


def get_backend():
    """Name of the active backend."""
    return _current.get()._value_  # .value: an enum property, ~0.3 us (the training loop asks each step)


@contextlib.contextmanager
def backend(name):
    """Context manager that switches the backend inside a ``with`` block."""
    b = _parse(name)
    kernels_for(b)
    token = _current.set(b)
    try:
        yield
    finally:
        _current.reset(token)


def kernels_for(b):
    """The module implementing the kernel interface for backend `b`."""
    b = _parse(b)
    if b is Backend.NUMPY:
        from . import reference
        return reference
    if b is Backend.CPU:
        global _cpu_module
        from . import _C
        _cpu_module = _C
        return _C
    mod = importlib.import_module("fastconv.cuda")
    mod.require()  # RuntimeError naming what is missing: CuPy, fastconv._cuda or a GPU
    return mod


# fastconv._C once imported: every functional call asks for the kernels, and the default
# backend's lookup through kernels_for (its _parse and import statement) was ~1 us of a 4 us
# softmax_backward call on 16 rows (1 thread, Zen 4).
# Backend.CPU is read once: an enum member's lookup through its class is ~60 ns a call.
_cpu_module, _CPU = None, Backend.CPU


def kernels():
    """The kernel module of the active backend."""
    b = _current.get()
    if b is _CPU and _cpu_module is not None:
        return _cpu_module
    return kernels_for(b)
