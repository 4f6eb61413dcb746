"""Keras-style arguments -> the explicit values the kernels take, and input coercion."""
import numbers

import numpy as np

from ..backend import Backend, _current, kernels

_ndarray, _F32 = np.ndarray, np.dtype(np.float32)


def array_module(x):
    """numpy, or cupy for CuPy arrays (without importing cupy when it is not in use)."""
    if type(x) is not _ndarray and type(x).__module__.startswith("cupy"):
        import cupy
        return cupy
    return np


def is_device_array(x):
    """True for a CuPy (GPU) array; never imports cupy."""
    # an ndarray is told apart first: the autograd ops and the training loop ask ~70 times a
    # LeNet-5 step, mostly of ndarrays, and the module name's test costs ~0.2 us more
    return type(x) is not _ndarray and type(x).__module__.startswith("cupy")


def array_of(a):
    """An autograd Tensor's data, a device array as it is, anything else as a NumPy array."""
    if hasattr(a, "requires_grad") and hasattr(a, "data"):
        a = a.data
    return a if is_device_array(a) else np.asarray(a)


def scalar(a):
    """A one-element value as a Python float, or as a 0-d device array for a GPU value (a
    float() of it would wait for the GPU)."""
    if type(a) is _ndarray and a.size:  # its first element in C order, ~0.1 us against ~0.5
        return float(a.item(0))
    if is_device_array(a):
        return a.reshape(())
    return float(np.ravel(np.asarray(a))[0])


def _is_int(v):
    # `type(v) is int` first: the ABC check costs ~0.5 us, paid on every op's arguments
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def pair(value, name, minimum=1):
    """An int or a pair of ints -> (a, b), each >= minimum."""
    # exact int / tuple of two ints first: the general checks below cost ~0.4 us a call
    if type(value) is int:
        if value >= minimum:
            return (value, value)
    elif type(value) is tuple and len(value) == 2:
        a, b = value
        if type(a) is int and type(b) is int and a >= minimum and b >= minimum:
            return value
    if _is_int(value):
        out = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def same_padding(in_size, kernel, stride, dilation=1):
    """TensorFlow's 'same' split for one axis: (before, after), the extra cell at the end."""
    out = -(-in_size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - in_size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, in_hw, kernel, strides, dilation=(1, 1)):
    """padding ('valid' | 'same' | int | (ph, pw) | ((t, b), (l, r))) -> (t, b, l, r)."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            t, b = same_padding(in_hw[0], kernel[0], strides[0], dilation[0])
            l, r = same_padding(in_hw[1], kernel[1], strides[1], dilation[1])
            return (t, b, l, r)
        raise ValueError(f"padding must be 'valid' or 'same' (or ints), got {padding!r}")
    if _is_int(padding):
        pads = (padding,) * 4
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(_is_int(p) for p in padding):
            pads = (padding[0], padding[0], padding[1], padding[1])
        elif all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(v) for v in p) for p in padding):
            pads = (padding[0][0], padding[0][1], padding[1][0], padding[1][1])
        else:
            pads = None
    else:
        pads = None
    if pads is None:
        raise TypeError("padding must be 'valid', 'same', an int, (ph, pw) or ((top, bottom), (left, right)), "
                        f"got {padding!r}")
    if min(pads) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return tuple(int(p) for p in pads)


def conv_output_size(in_size, kernel, stride=1, padding="valid", dilation=1):
    """Output length of one spatial axis (TensorFlow rules).

    Every layer's spatial output size comes from here, so this is where impossible geometry
    (a window larger than the padded input, or an empty input) is refused: a ValueError naming
    every number involved, rather than a zero-size output that fails only at predict time.

    >>> conv_output_size(28, 5, padding="same"), conv_output_size(14, 5), conv_output_size(224, 7, 2, "same")
    (28, 10, 112)
    >>> conv_output_size(5, 7)
    Traceback (most recent call last):
    ...
    ValueError: output size -1 < 1: input size 5, kernel 7, stride 1, padding 'valid', dilation 1 (window span 7 > padded input 5)
    """
    if isinstance(padding, str) and padding.lower() == "same":
        before, after = same_padding(in_size, kernel, stride, dilation)
    elif isinstance(padding, str) and padding.lower() == "valid":
        before = after = 0
    else:
        before, after = (padding, padding) if _is_int(padding) else padding
    geometry = f"kernel {kernel}, stride {stride}, padding {padding!r}, dilation {dilation}"
    if in_size < 1:
        raise ValueError(f"input size {in_size} < 1 ({geometry})")
    span = (kernel - 1) * dilation + 1
    padded = in_size + before + after
    out = (padded - span) // stride + 1
    if out < 1:
        raise ValueError(f"output size {out} < 1: input size {in_size}, {geometry} "
                         f"(window span {span} > padded input {padded})")
    return out


def plain(v):
    """True for an argument whose == and hash tell it apart from every other accepted value:
    an int, a str, None or a pair of ints. A bool or a float equal to an int (True == 1.0 == 1)
    would find an int's entry in a cache of resolved arguments and skip the TypeError it must
    raise, so only plain arguments are looked up in one (see bounded_cache)."""
    t = type(v)
    return (t is int or t is str or v is None
            or (t is tuple and len(v) == 2 and type(v[0]) is int and type(v[1]) is int))


def bounded_cache(maxsize=256):
    """A dict for resolved arguments (key -> validated result), emptied when it reaches maxsize
    entries: a network has a few dozen distinct layer geometries, so it rarely refills."""
    cache = {}

    def put(key, value):
        if len(cache) >= maxsize:
            cache.clear()
        cache[key] = value
        return value
    return cache, put


def floats(x, name):
    """Coerce an input array for the active backend.

    cpu: converted to C-contiguous float32 (float64 and non-contiguous inputs are copied).
    numpy: kept in its float dtype (float32 or float64; other dtypes become float32).
    """
    # A C-contiguous float32 ndarray of >= 1 axis is what every backend's coercion below hands
    # back as it is: return it after four cheap checks (~0.35 us) rather than ~1.1 us of
    # hasattr + contextvar + np.ascontiguousarray (1 thread, Zen 4, loaded machine). A 0-d
    # array is excluded: np.ascontiguousarray makes it 1-d.
    if type(x) is _ndarray and x.dtype == _F32 and x.flags.c_contiguous and x.ndim:
        return x
    if x is None:
        return None
    if hasattr(x, "requires_grad"):
        raise TypeError(f"{name} must be an array, got a Tensor; use fastconv.autograd.ops on Tensors")
    b = _current.get()
    if b is Backend.CPU:
        return np.ascontiguousarray(x, dtype=np.float32)
    xp = array_module(x)
    x = xp.asarray(x)
    if x.dtype not in (xp.float32, xp.float64):
        x = x.astype(xp.float32)
    return xp.ascontiguousarray(x)


def labels_array(labels, n, num_classes):
    """Sparse integer labels -> contiguous int64 (N,), checked against the class count (on
    the host; device labels are trusted, see fastconv.cuda.softmax_cross_entropy_forward)."""
    xp = array_module(labels)
    lab = xp.asarray(labels)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match logits, got {tuple(lab.shape)}")
    if lab.dtype.kind not in "fiu":
        raise TypeError(f"labels must be integer class indices, got dtype {lab.dtype}")
    if is_device_array(lab):  # values are not checked: that would be a host read per call
        return xp.ascontiguousarray(lab, dtype=xp.int64)
    if lab.dtype.kind == "f" and not bool(xp.all(lab == xp.floor(lab))):
        raise ValueError("labels must be integer class indices")
    lab = xp.ascontiguousarray(lab, dtype=xp.int64)
    if n:
        # up to 32 labels a Python min/max of the list: lab.min() + lab.max() cost ~2 us of ufunc
        # set-up, twice a training step (the loss forward and backward); 32: 1.1 us against 2.0
        if n <= 32:
            values = lab.tolist()
            lo, hi = min(values), max(values)
        else:
            lo, hi = int(lab.min()), int(lab.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"labels must be in [0, {num_classes}), got values in [{lo}, {hi}]")
    return lab


def require_rank(x, name, ndim, layout):
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {tuple(x.shape)}")


__all__ = ["array_module", "array_of", "is_device_array", "scalar", "pair", "same_padding", "resolve_padding", "conv_output_size", "kernels"]
