"""Grouped, dilated, strided 2-D convolution in NumPy: NHWC activations, HWIO weights.

The im2col formulation: `_windows` gathers, for every kernel tap (i, j), the strided slice of
the padded input that tap sees, giving columns (N, OH, OW, KH, KW, C); a contraction with the
weights per group is then the convolution. The backward passes are the same contraction read
the other way (`_col2im` scatters columns back onto the padded input and crops the pads).
`conv2d_forward_naive` computes the definition with explicit loops, to check the rest.
"""
import numpy as np

from ._checks import conv_geometry, float_array, optional_vector, require_shape
from .activation import bias_act_forward


def _tap_slices(g, i, j):
    """Row and column slices of the padded input read by kernel tap (i, j) at every output."""
    (sh, sw), (dh, dw) = g.strides, g.dilation
    rows = slice(i * dh, i * dh + (g.oh - 1) * sh + 1, sh)
    cols = slice(j * dw, j * dw + (g.ow - 1) * sw + 1, sw)
    return rows, cols


def _pad(x, pads, value=0.0):
    pt, pb, pl, pr = pads
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)


def _windows(xp, g):
    """Columns (N, OH, OW, KH, KW, C) of the padded input xp."""
    cols = np.empty((xp.shape[0], g.oh, g.ow, g.kh, g.kw, xp.shape[3]), xp.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            rows, cs = _tap_slices(g, i, j)
            cols[:, :, :, i, j, :] = xp[:, rows, cs, :]
    return cols


def _col2im(cols, g, dtype):
    """Adjoint of _windows followed by cropping: sum every column entry back onto its input cell."""
    pt, pb, pl, pr = g.pads
    xp = np.zeros((cols.shape[0], g.h + pt + pb, g.w + pl + pr, cols.shape[5]), dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            rows, cs = _tap_slices(g, i, j)
            xp[:, rows, cs, :] += cols[:, :, :, i, j, :]
    return xp[:, pt:pt + g.h, pl:pl + g.w, :]


def _grouped(cols, g):
    """(N, OH, OW, KH, KW, C) -> (N, OH, OW, KH, KW, G, C/G): input channel c is in group c // (C/G)."""
    return cols.reshape(cols.shape[:5] + (g.groups, g.cin_g))


def _grouped_weights(w, g):
    """(KH, KW, C/G, Cout) -> (KH, KW, C/G, G, Cout/G): output channel o is in group o // (Cout/G)."""
    return w.reshape(g.kh, g.kw, g.cin_g, g.groups, g.cout_g)


def conv2d_forward(x, w, b, strides, pads, dilation, groups, activation="linear"):
    """y (N, OH, OW, Cout) = activation(conv(x, w) + b)."""
    x = float_array(x, "x", 4, "(N, H, W, C)")
    w = float_array(w, "w", 4, "(KH, KW, Cin/groups, Cout)", x.dtype)
    g = conv_geometry(x.shape, w.shape, strides, pads, dilation, groups)
    b = optional_vector(b, "b", g.oc, x.dtype)
    cols = _grouped(_windows(_pad(x, g.pads), g), g)
    y = np.einsum("nyxhwgc,hwcgo->nyxgo", cols, _grouped_weights(w, g), optimize=True)
    y = y.reshape(g.n, g.oh, g.ow, g.oc)
    if b is not None:
        y = y + b
    return bias_act_forward(np.ascontiguousarray(y, dtype=x.dtype), None, activation)


def conv2d_backward_data(dy, w, x_shape, strides, pads, dilation, groups):
    """dx (x_shape) = gradient of sum(dy * conv(x, w)) with respect to x."""
    dy = float_array(dy, "dy", 4, "(N, OH, OW, Cout)")
    w = float_array(w, "w", 4, "(KH, KW, Cin/groups, Cout)", dy.dtype)
    g = conv_geometry(x_shape, w.shape, strides, pads, dilation, groups)
    require_shape(dy, "dy", (g.n, g.oh, g.ow, g.oc))
    dyg = dy.reshape(g.n, g.oh, g.ow, g.groups, g.cout_g)
    dcols = np.einsum("nyxgo,hwcgo->nyxhwgc", dyg, _grouped_weights(w, g), optimize=True)
    dcols = dcols.reshape(g.n, g.oh, g.ow, g.kh, g.kw, g.c)
    return np.ascontiguousarray(_col2im(dcols, g, dy.dtype))


def conv2d_backward_weights(dy, x, w_shape, strides, pads, dilation, groups, with_bias):
    """(dw (w_shape), db (Cout,) or None) = gradients of sum(dy * (conv(x, w) + b))."""
    dy = float_array(dy, "dy", 4, "(N, OH, OW, Cout)")
    x = float_array(x, "x", 4, "(N, H, W, C)", dy.dtype)
    g = conv_geometry(x.shape, w_shape, strides, pads, dilation, groups)
    require_shape(dy, "dy", (g.n, g.oh, g.ow, g.oc))
    cols = _grouped(_windows(_pad(x, g.pads), g), g)
    dyg = dy.reshape(g.n, g.oh, g.ow, g.groups, g.cout_g)
    dw = np.einsum("nyxhwgc,nyxgo->hwcgo", cols, dyg, optimize=True)
    dw = np.ascontiguousarray(dw.reshape(g.kh, g.kw, g.cin_g, g.oc), dtype=dy.dtype)
    db = dy.sum(axis=(0, 1, 2)) if with_bias else None
    return dw, db


def conv2d_forward_naive(x, w, b, strides, pads, dilation, groups):
    """The definition of conv2d_forward, one multiply-add at a time (tiny shapes only):

    y[n, oy, ox, o] = b[o] + sum over i, j, c of
        x[n, oy*sh + i*dh - top, ox*sw + j*dw - left, g*Cin_g + c] * w[i, j, c, o],
    with g = o // Cout_g and out-of-range input cells read as zero.
    """
    x = float_array(x, "x", 4, "(N, H, W, C)")
    w = float_array(w, "w", 4, "(KH, KW, Cin/groups, Cout)", x.dtype)
    g = conv_geometry(x.shape, w.shape, strides, pads, dilation, groups)
    b = optional_vector(b, "b", g.oc, x.dtype)
    (sh, sw), (dh, dw), (top, _, left, _) = g.strides, g.dilation, g.pads
    y = np.zeros((g.n, g.oh, g.ow, g.oc), x.dtype)
    for n in range(g.n):
        for oy in range(g.oh):
            for ox in range(g.ow):
                for o in range(g.oc):
                    group = o // g.cout_g
                    acc = 0.0 if b is None else float(b[o])
                    for i in range(g.kh):
                        iy = oy * sh + i * dh - top
                        if not 0 <= iy < g.h:
                            continue
                        for j in range(g.kw):
                            ix = ox * sw + j * dw - left
                            if not 0 <= ix < g.w:
                                continue
                            for c in range(g.cin_g):
                                acc += float(x[n, iy, ix, group * g.cin_g + c]) * float(w[i, j, c, o])
                    y[n, oy, ox, o] = acc
    return y
