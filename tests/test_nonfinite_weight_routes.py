"""NaN / inf in the few-channel 3x3 conv passes: exactly the float64 reference's pattern.

Backward data with a non-finite weight: the direct, planes and flat routes (C <= 8, Cout <=
32) ran dx as a correlation over zero-padded dy and gave NaN (0 * inf) to border pixels that
the reference, which scatters dy's own pixels times w, leaves finite; such weights now take
the im2col GEMM (csrc/cpu/conv2d.cpp). Random shapes (odd sizes, batch 1 and 2, strides 1 and
2, 'same', valid and pad-1 geometries, C = 1, 3, 6 and Cout != C), one NaN, +inf or -inf
weight at a random tap, fixed seeds; also NaN / inf in dy for the data and weight passes and
in x for the forward. Finite values: |got - ref| <= 1e-5 of the largest finite |ref|.

The forward with a non-finite weight: the reference multiplies the padding's zeros by it
(NaN at the border); the direct routes at stride 1 skipped the padding (inf or finite
there), so such weights take the plain im2col GEMM, whose columns hold those zeros."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

from conv_oracle import close_abs, same_nonfinite

BAD = (np.nan, np.inf, -np.inf)


def _same(h, w, s):
    th = max(0, (-(-h // s) - 1) * s + 3 - h)
    tw = max(0, (-(-w // s) - 1) * s + 3 - w)
    return (th // 2, th - th // 2, tw // 2, tw - tw // 2)


def _geometry(seed):
    """(x shape, Cout, args) of case seed: the scan that found the bug."""
    rng = np.random.default_rng(seed)
    c = (1, 3, 6)[seed % 3]
    s = (1, 2)[(seed // 3) % 2]
    cout = c if seed % 5 else (1, 16, 8)[seed % 3]
    n, h, w = 1 + seed % 2, int(rng.integers(1, 20)), int(rng.integers(1, 20))
    mode = seed % 4
    pads = _same(h, w, s) if mode < 2 else ((0, 0, 0, 0) if mode == 2 else (1, 1, 1, 1))
    if h + pads[0] + pads[1] < 3:
        h = 3
    if w + pads[2] + pads[3] < 3:
        w = 3
    if mode < 2:
        pads = _same(h, w, s)
    return (n, h, w, c), cout, ((s, s), pads, (1, 1), 1)


def _dy_shape(x_shape, cout, args):
    (s, _), pads = args[0], args[1]
    n, h, w, _ = x_shape
    return (n, (h + pads[0] + pads[1] - 3) // s + 1, (w + pads[2] + pads[3] - 3) // s + 1, cout)


def _ref_data(dy, wt, x_shape, args):
    with np.errstate(invalid="ignore"):
        return R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args)


@pytest.mark.parametrize("seed", range(48))
def test_data_nonfinite_weight(seed):
    x_shape, cout, args = _geometry(seed)
    rng = np.random.default_rng(1000 + seed)
    c = x_shape[3]
    dy = rng.standard_normal(_dy_shape(x_shape, cout, args)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, cout)).astype(np.float32)
    wt[rng.integers(3), rng.integers(3), rng.integers(c), rng.integers(cout)] = BAD[seed % 3]
    same_nonfinite(_C.conv2d_backward_data(dy, wt, x_shape, *args),
                   _ref_data(dy, wt, x_shape, args), close_abs)


@pytest.mark.parametrize("seed", range(48))
def test_forward_nonfinite_weight(seed):
    x_shape, cout, args = _geometry(seed)
    rng = np.random.default_rng(3000 + seed)
    c = x_shape[3]
    x = rng.standard_normal(x_shape).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if seed % 2 else None
    wt[rng.integers(3), rng.integers(3), rng.integers(c), rng.integers(cout)] = BAD[seed % 3]
    with np.errstate(invalid="ignore"):
        ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                               None if b is None else b.astype(np.float64), *args)
    same_nonfinite(_C.conv2d_forward(x, wt, b, *args), ref, close_abs)


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("c", (1, 3, 6))
@pytest.mark.parametrize("s", (1, 2))
def test_nonfinite_weight_every_tap(bad, c, s):
    """Each of the 9 taps in turn (the border rows / columns each one reaches), 'same' pads:
    backward data and forward."""
    rng = np.random.default_rng(c * 10 + s)
    x_shape = (1, 9, 11, c)
    args = ((s, s), _same(9, 11, s), (1, 1), 1)
    dy = rng.standard_normal(_dy_shape(x_shape, c, args)).astype(np.float32)
    for tap in range(9):
        wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
        wt[tap // 3, tap % 3, c - 1, 0] = bad
        same_nonfinite(_C.conv2d_backward_data(dy, wt, x_shape, *args),
                       _ref_data(dy, wt, x_shape, args), close_abs)
        x = rng.standard_normal(x_shape).astype(np.float32)
        with np.errstate(invalid="ignore"):
            ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *args)
        same_nonfinite(_C.conv2d_forward(x, wt, None, *args), ref, close_abs)


@pytest.mark.parametrize("seed", range(24))
def test_nonfinite_dy_and_x(seed):
    """NaN / inf in dy (data and weight passes) and in x (forward): the reference's pattern."""
    x_shape, cout, args = _geometry(seed)
    rng = np.random.default_rng(2000 + seed)
    n, h, w, c = x_shape
    dy = rng.standard_normal(_dy_shape(x_shape, cout, args)).astype(np.float32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, cout)).astype(np.float32)
    oh, ow = dy.shape[1:3]
    dy[0, rng.integers(oh), rng.integers(ow), rng.integers(cout)] = BAD[seed % 3]
    dy[n - 1, oh - 1, ow - 1, cout - 1] = BAD[(seed + 1) % 3]
    x[0, rng.integers(h), rng.integers(w), rng.integers(c)] = BAD[(seed + 2) % 3]
    x[n - 1, 0, w - 1, 0] = BAD[seed % 3]
    x64, w64, dy64 = x.astype(np.float64), wt.astype(np.float64), dy.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ry = R.conv2d_forward(x64, w64, None, *args)
        rdx = R.conv2d_backward_data(dy64, w64, x_shape, *args)
    same_nonfinite(_C.conv2d_forward(x, wt, None, *args), ry, close_abs)
    same_nonfinite(_C.conv2d_backward_data(dy, wt, x_shape, *args), rdx, close_abs)
    # The weight pass with dy's bad values alone (x made finite): each reaches whole dw rows.
    xf = np.where(np.isfinite(x), x, np.float32(0.5))
    dw, db = _C.conv2d_backward_weights(dy, xf, wt.shape, *args, True)
    with np.errstate(invalid="ignore"):
        rdw, rdb = R.conv2d_backward_weights(dy64, xf.astype(np.float64), wt.shape, *args, True)
    same_nonfinite(dw, rdw, close_abs)
    same_nonfinite(db, rdb, close_abs)
