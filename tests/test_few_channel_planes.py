"""The flat-planes kernel for same-size 3x3 stride-1 convs with C = 2..8 channels in and out
(csrc/cpu/few_channel_planes.cpp, AVX-512; at avx2 and the baseline these shapes run the direct
path, which these tests then check instead): all three passes against the float64 reference on
odd shapes (images under one vector, not multiples of 16 positions, one row, one column, 'same'
and uneven explicit pads summing to 2 each way, batch 1 to 3), weight-pass groups of images
with a short last group, threaded runs and their determinism, the fused activation, NaN and
inf in x, dy and w. Tolerances: conv_oracle.close (rtol 1e-4)."""
import itertools

import numpy as np
import pytest

from fastconv import _C
from fastconv import functional as F
from fastconv import reference as R
from conv_oracle import check_conv_passes, close, same_nonfinite

# (h, w): one pixel, one row, one column, under one vector, 7x7 and 14x14 (LeNet-like), rows
# not multiples of 16, an image of several register blocks with a partial last vector
SIZES = ((1, 1), (1, 9), (11, 1), (3, 4), (7, 7), (5, 13), (14, 14), (9, 17), (6, 40))
# (top, bottom, left, right) summing to 2 each way: the output has the input's size
PADS = ((1, 1, 1, 1), (0, 2, 2, 0), (2, 0, 0, 2), (1, 1, 0, 2), (2, 0, 1, 1))


def _data(rng, n, h, w, c, bias=True):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    return x, wt, b


@pytest.mark.parametrize("c", range(2, 9))
def test_passes_against_reference(c):
    rng = np.random.default_rng(40 + c)
    for i, ((h, w), pads) in enumerate(itertools.product(SIZES, PADS)):
        x, wt, b = _data(rng, 1 + i % 3, h, w, c, bias=i % 4 != 0)
        check_conv_passes(rng, x, wt, b, ((1, 1), pads, (1, 1), 1))


@pytest.mark.parametrize("c, n, hw", [(3, 100, 7), (2, 45, 10), (5, 23, 14), (3, 3, 60), (3, 9, 70),
                                      (4, 2, 70)])
def test_weight_pass_groups(c, n, hw):
    """Batches that make several groups of images (about 4096 positions a group: 83 images of
    7x7), the last one short, images larger than a group one a group (N >= 8), and below
    N = 8 the direct path's weight pass for those."""
    rng = np.random.default_rng(c * 1000 + n)
    x, wt, b = _data(rng, n, hw, hw, c)
    check_conv_passes(rng, x, wt, b, ((1, 1), (1, 1, 1, 1), (1, 1), 1))


def test_threaded_and_deterministic():
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        rng = np.random.default_rng(9)
        for c, n, h, w in ((3, 64, 14, 14), (6, 9, 33, 30), (4, 200, 7, 7)):
            x, wt, b = _data(rng, n, h, w, c)
            args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
            check_conv_passes(rng, x, wt, b, args)
            dy = rng.standard_normal(x.shape).astype(np.float32)
            a = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
            a2 = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
            assert np.array_equal(a[0], a2[0]) and np.array_equal(a[1], a2[1])
    finally:
        _C.set_num_threads(old)


@pytest.mark.parametrize("activation", ("relu", "sigmoid"))
def test_fused_activation(activation):
    rng = np.random.default_rng(12)
    x, wt, b = _data(rng, 3, 9, 23, 3)
    y = F.conv2d(x, wt, b, strides=1, padding="same", activation=activation)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64),
                           (1, 1), (1, 1, 1, 1), (1, 1), 1)
    ref = {"relu": lambda v: np.maximum(v, 0.0), "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}[activation](ref)
    close(y, ref)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
def test_nonfinite_match_reference(c, bad):
    """Masked loads read no padding and no neighbouring row: a non-finite x (forward and
    weight pass) or dy (backward data) gives exactly the reference's pattern, also next to an
    image edge. A non-finite weight or a non-finite dy in the weight pass meets the padding's
    zeros (0 * inf, as on the direct path): every output the reference makes non-finite is
    non-finite, the others close."""
    rng = np.random.default_rng(30 + c)
    n, h, w = 2, 7, 13
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    x, wt, b = _data(rng, n, h, w, c)
    x[0, 3, 5, c - 1] = bad
    x[1, 0, w - 1, 0] = bad  # a corner: its row and column neighbours across the edges
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y = _C.conv2d_forward(x, wt, b, *args)
    same_nonfinite(y, R.conv2d_forward(x64, w64, b.astype(np.float64), *args))
    assert not np.isfinite(y).all()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dw, _ = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    same_nonfinite(dw, R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, True)[0])
    dy[1, h - 1, 0, 0] = bad
    dy[0, 2, 6, c - 1] = bad
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    same_nonfinite(dx, R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))
    x, wt, b = _data(rng, n, h, w, c)
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), wt.shape, *args, True)
    same_nonfinite(db, rdb)
    assert not np.isfinite(dw[~np.isfinite(rdw)]).any()
    close(dw[np.isfinite(rdw) & np.isfinite(dw)], rdw[np.isfinite(rdw) & np.isfinite(dw)])
    wt[1, 2, 0, c - 1] = bad
    w64 = wt.astype(np.float64)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    for got, ref in ((_C.conv2d_forward(x, wt, b, *args),
                      R.conv2d_forward(x.astype(np.float64), w64, b.astype(np.float64), *args)),
                     (_C.conv2d_backward_data(dy, wt, x.shape, *args),
                      R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))):
        assert not np.isfinite(ref).all()
        assert not np.isfinite(got[~np.isfinite(ref)]).any()
        both = np.isfinite(ref) & np.isfinite(got)
        close(got[both], ref[both])
