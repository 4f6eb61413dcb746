"""Argument checks shared by every oracle function.

The messages follow csrc/common/geometry.h and csrc/bindings/array_check.h so that the oracle
and the native kernels reject the same inputs in the same words. Unlike `_C`, the oracle takes
float32 or float64; every float output has the dtype of the function's first array argument
(the other float arrays are cast to it, so a float32 call is computed in float32).
"""
from collections import namedtuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def shape_str(shape):
    shape = tuple(int(s) for s in shape)
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def float_array(a, name, ndim=None, expected="", dtype=None):
    """`a` as a float ndarray (of `dtype` when given); TypeError/ValueError name `name`."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of float32 or float64 {expected}, "
                        f"got {type(a).__name__}")
    if dtype is None:
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype} "
                            "(convert with .astype)")
    elif a.dtype != dtype:
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{name} must have a numeric dtype, got {a.dtype}")
        a = a.astype(dtype)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {expected}, got shape {shape_str(a.shape)}")
    return a


def optional_vector(b, name, n, dtype):
    """None, or a float vector of length n cast to dtype."""
    if b is None:
        return None
    b = float_array(b, name, 1, "(C,)", dtype)
    if b.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {shape_str(b.shape)}")
    return b


def require_shape(a, name, want):
    if tuple(a.shape) != tuple(want):
        raise ValueError(f"{name} must have shape {shape_str(want)}, got {shape_str(a.shape)}")


def int_tuple(v, name, n):
    """A tuple of exactly n Python ints (shapes, strides, pads)."""
    try:
        t = tuple(v)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of {n} ints, got {v!r}") from None
    if len(t) != n or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in t):
        raise ValueError(f"{name} must be a tuple of {n} ints, got {v!r}")
    return tuple(int(i) for i in t)


def window_output_size(size, k, stride, dilation, pad_before, pad_after):
    span = (k - 1) * dilation + 1
    padded = size + pad_before + pad_after
    return 0 if padded < span else (padded - span) // stride + 1


def _check_window(h, w, kernel, strides, dilation, pads, what):
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    if kh < 1 or kw < 1:
        raise ValueError(f"{what}: window size must be >= 1, got {shape_str(kernel)}")
    if sh < 1 or sw < 1:
        raise ValueError(f"{what}: strides must be >= 1, got {shape_str(strides)}")
    if dh < 1 or dw < 1:
        raise ValueError(f"{what}: dilation must be >= 1, got {shape_str(dilation)}")
    if min(pads) < 0:
        raise ValueError(f"{what}: pads must be >= 0, got (top, bottom, left, right) = {shape_str(pads)}")
    pt, pb, pl, pr = pads
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if h + pt + pb < span_h or w + pl + pr < span_w:
        raise ValueError(f"{what}: window {shape_str((span_h, span_w))} (kernel {shape_str(kernel)}, "
                         f"dilation {shape_str(dilation)}) is larger than the padded input "
                         f"{shape_str((h + pt + pb, w + pl + pr))} (input {shape_str((h, w))}, "
                         f"pads {shape_str(pads)})")


ConvGeometry = namedtuple(
    "ConvGeometry", "n h w c kh kw cin_g oc groups cout_g strides pads dilation oh ow")


def conv_geometry(x_shape, w_shape, strides, pads, dilation, groups):
    """Validated geometry of a grouped conv: x (N, H, W, C), weights HWIO (KH, KW, C/groups, Cout)."""
    x_shape = int_tuple(x_shape, "x_shape", 4)
    w_shape = int_tuple(w_shape, "w_shape", 4)
    strides = int_tuple(strides, "strides", 2)
    pads = int_tuple(pads, "pads", 4)
    dilation = int_tuple(dilation, "dilation", 2)
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"groups must be an int, got {groups!r}")
    n, h, w, c = x_shape
    kh, kw, cin_g, oc = w_shape
    if n < 0 or h < 1 or w < 1 or c < 1:
        raise ValueError("conv2d: input x must be (N, H, W, C) with H, W, C >= 1, got " + shape_str(x_shape))
    if kh < 1 or kw < 1 or cin_g < 1 or oc < 1:
        raise ValueError("conv2d: weights must be (KH, KW, Cin/groups, Cout) with all >= 1, got "
                         + shape_str(w_shape))
    if groups < 1:
        raise ValueError(f"conv2d: groups must be >= 1, got {groups}")
    if c % groups or oc % groups:
        raise ValueError(f"conv2d: groups={groups} must divide input channels {c} and output channels {oc}")
    if cin_g * groups != c:
        raise ValueError(f"conv2d: channel mismatch: x {shape_str(x_shape)} has {c} channels but weights "
                         f"{shape_str(w_shape)} expect {cin_g} per group x groups={groups} = {cin_g * groups}")
    _check_window(h, w, (kh, kw), strides, dilation, pads, "conv2d")
    oh = window_output_size(h, kh, strides[0], dilation[0], pads[0], pads[1])
    ow = window_output_size(w, kw, strides[1], dilation[1], pads[2], pads[3])
    return ConvGeometry(n, h, w, c, kh, kw, cin_g, oc, int(groups), oc // groups,
                        strides, pads, dilation, oh, ow)


# dilation is always (1, 1): it lets the conv im2col helpers walk pool windows too.
PoolGeometry = namedtuple("PoolGeometry", "n h w c kh kw strides pads dilation oh ow")


def pool_geometry(x_shape, pool, strides, pads, what):
    """Validated pooling geometry; each pad must be smaller than the window (no all-pad window)."""
    x_shape = int_tuple(x_shape, "x_shape", 4)
    pool = int_tuple(pool, "pool", 2)
    strides = int_tuple(strides, "strides", 2)
    pads = int_tuple(pads, "pads", 4)
    n, h, w, c = x_shape
    if n < 0 or h < 1 or w < 1 or c < 1:
        raise ValueError(f"{what}: input x must be (N, H, W, C) with H, W, C >= 1, got {shape_str(x_shape)}")
    _check_window(h, w, pool, strides, (1, 1), pads, what)
    kh, kw = pool
    pt, pb, pl, pr = pads
    if pt >= kh or pb >= kh or pl >= kw or pr >= kw:
        raise ValueError(f"{what}: each pad must be smaller than the pool size {shape_str(pool)}, "
                         f"got pads {shape_str(pads)}")
    oh = window_output_size(h, kh, strides[0], 1, pt, pb)
    ow = window_output_size(w, kw, strides[1], 1, pl, pr)
    return PoolGeometry(n, h, w, c, kh, kw, strides, pads, (1, 1), oh, ow)


def check_activation(activation):
    if activation not in ("linear", "relu", "sigmoid", "tanh"):
        raise ValueError("activation must be one of 'linear', 'relu', 'sigmoid', 'tanh', "
                         f"got {activation!r}")
    return activation


def labels_array(labels, n, c):
    """Integer class labels of shape (n,), each in [0, c)."""
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
        got = labels.dtype if isinstance(labels, np.ndarray) else type(labels).__name__
        raise TypeError(f"labels must be a numpy.ndarray of int64 (N,), got {got}")
    require_shape(labels, "labels", (n,))
    if n and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must be in [0, {c}), got values in [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64, copy=False)
