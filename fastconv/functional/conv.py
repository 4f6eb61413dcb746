"""Convolution and dense layers on arrays: forward and backward, any backend.

>>> import numpy as np
>>> from fastconv import functional as F
>>> x = np.ones((2, 6, 6, 4), np.float32); w = np.ones((3, 3, 2, 8), np.float32)
>>> F.conv2d(x, w, strides=2, padding="same", groups=2).shape
(2, 3, 3, 8)
"""
import numbers

from ._args import bounded_cache, floats, kernels, pair, plain, require_rank, resolve_padding
from .activation import _activation_name


_conv_cache, _conv_put = bounded_cache()


def _conv_args(x, w, strides, padding, dilation_rate, groups):
    # Resolved (strides, pads, dilation) of plain arguments are cached by shapes and arguments:
    # the checks and the 'same' split below were ~2 us of a ~4 us wrapper (1 thread, Zen 4).
    # Only values that passed every check are stored, so a hit is a call that would pass them.
    key = None
    # (the common int / str tested inline first: ~0.1 us less than three plain() calls)
    if ((type(strides) is int or plain(strides)) and (type(padding) is str or plain(padding))
            and (type(dilation_rate) is int or plain(dilation_rate)) and type(groups) is int):
        key = (x.shape, w.shape, strides, padding, dilation_rate, groups)
        hit = _conv_cache.get(key)
        if hit is not None:
            return hit
    require_rank(x, "x", 4, "(N, H, W, C)")
    require_rank(w, "w", 4, "(KH, KW, Cin/groups, Cout)")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    strides = pair(strides, "strides")
    dilation = pair(dilation_rate, "dilation_rate")
    pads = resolve_padding(padding, x.shape[1:3], w.shape[:2], strides, dilation)
    return (strides, pads, dilation) if key is None else _conv_put(key, (strides, pads, dilation))


def conv2d(x, w, b=None, *, strides=1, padding="valid", dilation_rate=1, groups=1, activation=None):
    """2-D convolution (cross-correlation, as every framework computes it).

    x (N, H, W, C), w (KH, KW, C/groups, Cout), b (Cout,) or None -> (N, OH, OW, Cout).
    padding: 'valid', 'same' (TensorFlow's split: the extra cell at the bottom/right), an int,
    (ph, pw), or ((top, bottom), (left, right)). activation: None/'linear', 'relu', 'sigmoid'
    or 'tanh', applied inside the conv kernel while the output is in cache (no extra pass).
    """
    return _conv2d(floats(x, "x"), floats(w, "w"), floats(b, "b"), strides, padding, dilation_rate, groups,
                   _activation_name(activation))


def _conv2d(x, w, b, strides, padding, dilation_rate, groups, act):
    # conv2d on coerced arrays (depthwise_conv2d's arrays are coerced once, not twice)
    strides, pads, dilation = _conv_args(x, w, strides, padding, dilation_rate, groups)
    if act == "linear":  # the kernel interface's short form, which every backend takes
        return kernels().conv2d_forward(x, w, b, strides, pads, dilation, groups)
    return kernels().conv2d_forward(x, w, b, strides, pads, dilation, groups, act)


def _shape4(shape, name, layout):
    if (not isinstance(shape, (tuple, list)) or len(shape) != 4
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shape)):
        raise TypeError(f"{name} must be a tuple of 4 ints {layout}, got {shape!r}")
    return tuple(int(v) for v in shape)


def conv2d_algorithm(x_shape, w_shape, strides=1, padding="valid", dilation_rate=1, groups=1):
    """Which algorithm the cpu backend uses for each pass of this convolution, now.

    Returns {'forward': a, 'backward_data': a, 'backward_weights': a} with a in 'winograd',
    'im2col', 'depthwise'. The answer follows fastconv.set_conv_algorithm, the thread count
    and the workspace limit, and describes the cpu backend whichever backend is active.

    >>> conv2d_algorithm((8, 56, 56, 64), (3, 3, 64, 64), padding="same")["forward"]
    'winograd'
    >>> conv2d_algorithm((8, 56, 56, 64), (3, 3, 64, 64), strides=2, padding="same")["forward"]
    'im2col'
    """
    xs = _shape4(x_shape, "x_shape", "(N, H, W, C)")
    ws = _shape4(w_shape, "w_shape", "(KH, KW, Cin/groups, Cout)")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    strides = pair(strides, "strides")
    dilation = pair(dilation_rate, "dilation_rate")
    pads = resolve_padding(padding, xs[1:3], ws[:2], strides, dilation)
    from .. import _C
    return dict(_C.conv_algorithm(xs, ws, strides, pads, dilation, groups))


def conv2d_backward(dy, x, w, *, strides=1, padding="valid", dilation_rate=1, groups=1,
                    need_dx=True, need_db=True):
    """Gradients of conv2d: (dx or None, dw, db or None) for upstream gradient dy."""
    return _conv2d_backward(floats(dy, "dy"), floats(x, "x"), floats(w, "w"), strides, padding, dilation_rate,
                            groups, need_dx, need_db)


def _conv2d_backward(dy, x, w, strides, padding, dilation_rate, groups, need_dx, need_db):
    strides, pads, dilation = _conv_args(x, w, strides, padding, dilation_rate, groups)
    k = kernels()
    dx = k.conv2d_backward_data(dy, w, x.shape, strides, pads, dilation, groups) if need_dx else None
    dw, db = k.conv2d_backward_weights(dy, x, w.shape, strides, pads, dilation, groups, need_db)
    return dx, dw, db


def _depthwise_as_grouped(x, w):
    # Keras's depthwise kernel (KH, KW, C, M) is a grouped HWIO kernel (KH, KW, 1, C*M) with
    # groups == C: output channel c*M + m reads input channel c. A reshape, no copy.
    # (each shape read once: an ndarray's .shape builds a new tuple on every read)
    ws, xs = w.shape, x.shape
    if len(ws) != 4:
        require_rank(w, "w", 4, "(KH, KW, C, depth_multiplier)")
    if len(xs) != 4:
        require_rank(x, "x", 4, "(N, H, W, C)")
    kh, kw, c, m = ws
    if c != xs[3]:
        raise ValueError(f"depthwise kernel w {tuple(ws)} expects {c} input channels, x {tuple(xs)} has {xs[3]}")
    return w.reshape(kh, kw, 1, c * m), c


def depthwise_conv2d(x, w, b=None, *, strides=1, padding="valid", dilation_rate=1):
    """Depthwise convolution, Keras layout: w (KH, KW, C, M) -> output (N, OH, OW, C*M)."""
    x, w, b = floats(x, "x"), floats(w, "w"), floats(b, "b")
    wg, c = _depthwise_as_grouped(x, w)
    return _conv2d(x, wg, b, strides, padding, dilation_rate, c, "linear")


def depthwise_conv2d_backward(dy, x, w, *, strides=1, padding="valid", dilation_rate=1,
                              need_dx=True, need_db=True):
    """Gradients of depthwise_conv2d: (dx or None, dw (KH, KW, C, M), db or None)."""
    dy, x, w = floats(dy, "dy"), floats(x, "x"), floats(w, "w")
    wg, c = _depthwise_as_grouped(x, w)
    dx, dw, db = _conv2d_backward(dy, x, wg, strides, padding, dilation_rate, c, need_dx, need_db)
    return dx, dw.reshape(w.shape), db


def dense(x, w, b=None):
    """x (N, K) @ w (K, M) + b -> (N, M)."""
    x, w, b = floats(x, "x"), floats(w, "w"), floats(b, "b")
    require_rank(x, "x", 2, "(N, K)")
    require_rank(w, "w", 2, "(K, M)")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"dense: x {tuple(x.shape)} has {x.shape[1]} features but w {tuple(w.shape)} expects {w.shape[0]}")
    return kernels().dense_forward(x, w, b)


def dense_backward(dy, x, w):
    """Gradients of dense: (dx, dw, db)."""
    dy, x, w = floats(dy, "dy"), floats(x, "x"), floats(w, "w")
    if dy.ndim != 2 or dy.shape != (x.shape[0], w.shape[1]):
        raise ValueError(f"dy must have shape {(x.shape[0], w.shape[1])}, got {tuple(dy.shape)}")
    return kernels().dense_backward(dy, x, w)
