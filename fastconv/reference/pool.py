"""Max, average and global average pooling over NHWC inputs.

Windows are gathered tap by tap like conv's im2col (pooling has no dilation). Max pool pads
with -inf and picks the first *real* cell equal to the max, so a padded cell never wins even
when the real cells are -inf; ties go to the first cell in row-major window order, and backward
routes each output's gradient to that one cell. A window holding NaN pools to NaN, its last NaN
cell (row-major) being the winner that receives the gradient (PyTorch's rule). Average pool divides by the count of real
cells in each window.
"""
import numpy as np

from ._checks import float_array, int_tuple, pool_geometry, require_shape
from .conv import _col2im, _pad, _windows


def _windows_flat(xp, g):
    """(N, OH, OW, KH*KW, C): the window cells in row-major window order."""
    cols = _windows(xp, g)
    return cols.reshape(cols.shape[:3] + (g.kh * g.kw, cols.shape[5]))


def _real_cells(g):
    """(1, OH, OW, KH*KW, 1) bool: which window cells are real input, not padding."""
    ones = np.ones((1, g.h, g.w, 1), np.int8)
    return _windows_flat(_pad(ones, g.pads), g).astype(bool)


def _argmax_cells(x, g):
    """Index (N, OH, OW, C) of the winning window cell: the last NaN cell if the window holds
    one (the window pools to NaN and its gradient goes there, as in PyTorch), else the first
    real cell holding the max."""
    cells = _windows_flat(_pad(x, g.pads, -np.inf), g)
    # Every window holds a real cell (pads < pool), so the max over -inf-padded cells is the
    # max over real ones; argmax of a bool array is its first True: the first real cell at max.
    best = cells.max(axis=3, keepdims=True)
    first_max = np.argmax(_real_cells(g) & (cells == best), axis=3)
    # A NaN window's max is NaN, equal to no cell: without this its "winner" was cell 0, a
    # number (or a padded -inf), so NaN vanished from the output.
    nan = np.isnan(cells)
    last_nan = nan.shape[3] - 1 - np.argmax(nan[:, :, :, ::-1], axis=3)
    return np.where(nan.any(axis=3), last_nan, first_max)


def max_pool2d_forward(x, pool, strides, pads):
    x = float_array(x, "x", 4, "(N, H, W, C)")
    g = pool_geometry(x.shape, pool, strides, pads, "max_pool2d")
    cells = _windows_flat(_pad(x, g.pads, -np.inf), g)
    winner = _argmax_cells(x, g)
    y = np.take_along_axis(cells, winner[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    return np.ascontiguousarray(y)


def max_pool2d_backward(dy, x, pool, strides, pads):
    dy = float_array(dy, "dy", 4, "(N, OH, OW, C)")
    x = float_array(x, "x", 4, "(N, H, W, C)", dy.dtype)
    g = pool_geometry(x.shape, pool, strides, pads, "max_pool2d")
    require_shape(dy, "dy", (g.n, g.oh, g.ow, g.c))
    return _scatter_to_winner(dy, _argmax_cells(x, g), g)


def _check_argmax_window(g, what):
    if g.kh * g.kw > 256:
        raise ValueError(f"{what}: pool must have at most 256 cells for a uint8 argmax, got "
                         f"pool ({g.kh}, {g.kw}); use max_pool2d_backward with x")


def max_pool2d_forward_with_argmax(x, pool, strides, pads):
    """(y, argmax): argmax (uint8, y's shape) is the winner's position ky*kw + kx in the padded
    window, the cell max_pool2d_backward would route the gradient to."""
    x = float_array(x, "x", 4, "(N, H, W, C)")
    g = pool_geometry(x.shape, pool, strides, pads, "max_pool2d")
    _check_argmax_window(g, "max_pool2d_forward_with_argmax")
    return max_pool2d_forward(x, pool, strides, pads), _argmax_cells(x, g).astype(np.uint8)


def max_pool2d_backward_argmax(dy, argmax, x_shape, pool, strides, pads):
    dy = float_array(dy, "dy", 4, "(N, OH, OW, C)")
    g = pool_geometry(x_shape, pool, strides, pads, "max_pool2d")
    _check_argmax_window(g, "max_pool2d_backward_argmax")
    require_shape(dy, "dy", (g.n, g.oh, g.ow, g.c))
    argmax = np.asarray(argmax)
    if argmax.dtype != np.uint8:
        raise TypeError(f"argmax must have dtype uint8, got {argmax.dtype}")
    require_shape(argmax, "argmax", (g.n, g.oh, g.ow, g.c))
    return _scatter_to_winner(dy, argmax.astype(np.int64), g)


def _scatter_to_winner(dy, winner, g):
    """dx from each output's winning window cell (N, OH, OW, C)."""
    cell = np.arange(g.kh * g.kw).reshape(1, 1, 1, -1, 1)
    dcells = np.where(winner[:, :, :, None, :] == cell, dy[:, :, :, None, :], 0).astype(dy.dtype)
    dcols = dcells.reshape(g.n, g.oh, g.ow, g.kh, g.kw, g.c)
    return np.ascontiguousarray(_col2im(dcols, g, dy.dtype))


def avg_pool2d_forward(x, pool, strides, pads):
    x = float_array(x, "x", 4, "(N, H, W, C)")
    g = pool_geometry(x.shape, pool, strides, pads, "avg_pool2d")
    total = _windows_flat(_pad(x, g.pads), g).sum(axis=3)
    count = _real_cells(g).sum(axis=3)
    return np.ascontiguousarray(total / count.astype(x.dtype))


def avg_pool2d_backward(dy, x_shape, pool, strides, pads):
    dy = float_array(dy, "dy", 4, "(N, OH, OW, C)")
    g = pool_geometry(x_shape, pool, strides, pads, "avg_pool2d")
    require_shape(dy, "dy", (g.n, g.oh, g.ow, g.c))
    share = dy / _real_cells(g).sum(axis=3).astype(dy.dtype)
    dcols = np.broadcast_to(share[:, :, :, None, None, :], (g.n, g.oh, g.ow, g.kh, g.kw, g.c))
    # Padded cells receive a share too, but _col2im crops them away.
    return np.ascontiguousarray(_col2im(dcols, g, dy.dtype))


def global_avg_pool2d_forward(x):
    x = float_array(x, "x", 4, "(N, H, W, C)")
    if x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"global_avg_pool2d: x must have H, W >= 1, got shape {x.shape}")
    return np.ascontiguousarray(x.mean(axis=(1, 2), dtype=x.dtype))


def global_avg_pool2d_backward(dy, x_shape):
    dy = float_array(dy, "dy", 2, "(N, C)")
    n, h, w, c = int_tuple(x_shape, "x_shape", 4)
    require_shape(dy, "dy", (n, c))
    if h < 1 or w < 1:
        raise ValueError(f"global_avg_pool2d: x_shape must have H, W >= 1, got {x_shape}")
    dx = np.broadcast_to((dy / dy.dtype.type(h * w))[:, None, None, :], (n, h, w, c))
    return np.ascontiguousarray(dx)
