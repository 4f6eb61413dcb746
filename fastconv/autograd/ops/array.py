"""Differentiable array plumbing: concatenate, split, pad, dropout."""
import itertools

from ... import functional as F
from ...functional import array_module
from ..function import Function
from ..tensor import Tensor, as_array
from .math import getitem, mul


class Concatenate(Function):
    def forward(self, *arrays, axis=-1):
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return F.concatenate(arrays, axis=axis)

    def backward(self, g):
        cuts = list(itertools.accumulate(self.sizes))[:-1]
        return tuple(array_module(g).split(g, cuts, axis=self.axis))


class Pad(Function):
    def forward(self, x, pad_width=None, value=0.0):
        self.slices = tuple(slice(b, b + n) for (b, _), n in zip(pad_width, x.shape))
        return F.pad(x, pad_width, value)

    def backward(self, g):
        return (g[self.slices],)


def concatenate(tensors, axis=-1):
    return Concatenate.apply(*tensors, axis=axis)


def split(x, sizes_or_n, axis=-1):
    """Split along `axis` into n equal parts or parts of the given sizes."""
    length = x.shape[axis]
    if isinstance(sizes_or_n, int):
        if length % sizes_or_n:
            raise ValueError(f"cannot split axis of length {length} into {sizes_or_n} equal parts")
        sizes = [length // sizes_or_n] * sizes_or_n
    else:
        sizes = list(sizes_or_n)
        if sum(sizes) != length:
            raise ValueError(f"split sizes {sizes} do not add up to the axis length {length}")
    parts, start = [], 0
    ndim = len(x.shape)
    for s in sizes:
        index = [slice(None)] * ndim
        index[axis] = slice(start, start + s)
        parts.append(getitem(x, tuple(index)))
        start += s
    return parts


def pad(x, pad_width, value=0.0):
    pw = tuple((int(a), int(b)) for a, b in pad_width)
    return Pad.apply(x, pad_width=pw, value=value)


def dropout(x, rate, rng, training, noise_shape=None):
    """Inverted dropout: zero with probability `rate`, scale the rest by 1/(1-rate).
    noise_shape: the mask's shape, broadcast over x (1 on an axis shares a draw along it)."""
    if not training or rate == 0:
        return x if isinstance(x, Tensor) else Tensor(x)
    if not 0 <= rate < 1:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    xd = as_array(x)
    keep = rng.random(xd.shape if noise_shape is None else tuple(noise_shape)) >= rate
    xp = array_module(xd)
    mask = xp.asarray(keep, dtype=xd.dtype) * xd.dtype.type(1.0 / (1.0 - rate))
    return mul(x, mask)
