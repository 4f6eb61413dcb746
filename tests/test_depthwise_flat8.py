"""Depthwise 3x3 stride-1 'same' with few channels (C <= 8) at the avx2 level, and the plain
3x3 'same' conv of one channel in and out (groups 1) (csrc/cpu/depthwise_flat8.cpp): 8-lane
vectors along the flat NHWC row, stepping S = 8 // C * C floats (C = 3, 6: 6; C = 5: 5; C = 7:
7; C = 1, 2, 4, 8: 8), rows of up to 64 floats two output rows at a time, plain loads in a
row's interior and masked ones where a tap reaches past a row end, the row's last vector
storing only its own lanes; relu / relu6 applied in registers; the weight pass on the same
steps (lanes >= S read dy as zero). The forward, backward data (the same pass over dy, kernel
flipped) and weight pass against the float64 oracle, at every ISA level (below avx2 other
kernels run the same cases). Tolerances as in test_depthwise.py (1e-4 relative, 1e-5 of the
magnitude absolute)."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

ARGS = lambda c: ((1, 1), (1, 1, 1, 1), (1, 1), c)  # noqa: E731


def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


def _ref_forward(x, wt, b, c, activation="linear"):
    z = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None if b is None else b.astype(np.float64),
                         *ARGS(c), "relu" if activation == "relu6" else activation)
    return np.minimum(z, 6.0) if activation == "relu6" else z


def _check_all(rng, n, h, w, c, bias=True, acts=("linear",)):
    x = (2 * rng.standard_normal((n, h, w, c))).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    for act in acts:
        _close(_C.conv2d_forward(x, wt, b, *ARGS(c), act), _ref_forward(x, wt, b, c, act))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *ARGS(c))
    _close(dx, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, *ARGS(c)))
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *ARGS(c), bias)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), wt.shape, *ARGS(c), bias)
    _close(dw, rdw)
    if bias:
        _close(db, rdb)


# Widths around the step: rows of one vector or less (W*C <= 8), exactly one or two steps,
# one float past a step, rows with no interior vector and with many; odd heights, batch 1.
@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("w", [1, 2, 3, 4, 5, 7, 8, 9, 13, 17, 30])
def test_flat8_widths(c, w):
    rng = np.random.default_rng(100 * c + w)
    _check_all(rng, 1 + w % 2, 3 + w % 4, w, c, bias=w % 3 != 0)


# The sweep's shapes (N=256/32, 7..112 square, C = 1, 3, 6) scaled down in batch and size.
@pytest.mark.parametrize("c", [1, 3, 6, 8])
@pytest.mark.parametrize("n, hw", [(3, 7), (2, 14), (2, 28), (1, 56), (1, 37)])
def test_flat8_sweep_shapes(n, hw, c):
    _check_all(np.random.default_rng(n * hw + c), n, hw, hw, c, acts=("linear", "relu", "relu6", "sigmoid"))


@pytest.mark.parametrize("c", [3, 5, 6, 7, 8])
def test_flat8_two_threads(c, two_threads):
    """Lines split over two threads (over 32K floats: threaded); the weight pass's thread
    partials added in thread order."""
    _check_all(np.random.default_rng(9 + c), 3, 41, 37, c)


@pytest.mark.parametrize("c", [3, 6])
def test_flat8_one_image_two_threads(c, two_threads):
    """Batch 1: the item team's blocks of rows start and end inside the image."""
    _check_all(np.random.default_rng(19 + c), 1, 131, 97, c)


@pytest.mark.parametrize("c, w", [(3, 11), (6, 5), (5, 9), (7, 3), (1, 17), (3, 1), (6, 2), (8, 6), (8, 1)])
@pytest.mark.parametrize("act", ["linear", "relu", "relu6"])
def test_flat8_nan_reaches_its_window(c, w, act):
    """A NaN in x at a row's first, interior and last pixel, in channel c - 1, reaches exactly
    the outputs whose 3x3 window holds it, through relu / relu6 in registers; an inf in dy
    reaches exactly its window of dx; a NaN in x reaches exactly the taps that read it in dw."""
    rng = np.random.default_rng(c * 13 + w)
    wt = rng.uniform(0.5, 1.0, (3, 3, 1, c)).astype(np.float32)
    for col in sorted({0, w // 2, w - 1}):
        x = rng.uniform(0.5, 1.0, (2, 5, w, c)).astype(np.float32)
        x[1, 2, col, c - 1] = np.nan
        y = _C.conv2d_forward(x, wt, None, *ARGS(c), act)
        expect = np.zeros(y.shape, bool)
        expect[1, 1:4, max(col - 1, 0):col + 2, c - 1] = True
        np.testing.assert_array_equal(np.isnan(y), expect)
        ref = _ref_forward(np.where(np.isnan(x), 0, x), wt, None, c, act)
        _close(np.where(expect, 0, y).astype(np.float32), np.where(expect, 0, ref))
        dy = np.where(np.isnan(x), np.inf, x).astype(np.float32)
        dx = _C.conv2d_backward_data(dy, wt, x.shape, *ARGS(c))
        np.testing.assert_array_equal(np.isposinf(dx), expect)
        assert np.isfinite(dx[~expect]).all()
        dw, db = _C.conv2d_backward_weights(np.ones_like(x), x, wt.shape, *ARGS(c), True)
        nan = np.isnan(dw[:, :, 0, :])
        taps = np.zeros_like(nan)
        taps[:, :, c - 1] = True
        if col == 0:  # tap kx reads column ox - 1 + kx: kx = 2 never reads column 0
            taps[:, 2, c - 1] = False
        if col == w - 1:  # nor kx = 0 the last column
            taps[:, 0, c - 1] = False
        np.testing.assert_array_equal(nan, taps)
        assert np.isfinite(db).all()


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the oracle's 0 * inf
@pytest.mark.parametrize("c", [1, 3, 6, 7])
def test_flat8_inf_weight_times_padding_is_nan(c):
    """The padding's zeros are multiplied like any input, as in the oracle: an inf weight on
    tap (0, 0) makes the first row's and column's outputs NaN, the others inf."""
    rng = np.random.default_rng(c)
    x = rng.uniform(0.5, 1.0, (2, 6, 9, c)).astype(np.float32)
    w = rng.uniform(0.5, 1.0, (3, 3, 1, c)).astype(np.float32)
    w[0, 0, 0, c - 1] = np.inf
    y = _C.conv2d_forward(x, w, None, *ARGS(c))
    ref = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, *ARGS(c))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref))


@pytest.mark.parametrize("c", [3, 6])
def test_flat8_deterministic(c):
    """The same call twice gives the same bits (forward and weight pass)."""
    rng = np.random.default_rng(c + 50)
    x = rng.standard_normal((4, 29, 31, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    np.testing.assert_array_equal(_C.conv2d_forward(x, wt, b, *ARGS(c)), _C.conv2d_forward(x, wt, b, *ARGS(c)))
    a = _C.conv2d_backward_weights(x, x, wt.shape, *ARGS(c), True)
    bb = _C.conv2d_backward_weights(x, x, wt.shape, *ARGS(c), True)
    np.testing.assert_array_equal(a[0], bb[0])
    np.testing.assert_array_equal(a[1], bb[1])


@pytest.mark.parametrize("n, h, w, c", [(67, 14, 14, 3), (1, 301, 21, 3), (33, 7, 7, 6), (9, 29, 64, 1), (5, 15, 9, 7), (7, 9, 8, 8)])
def test_flat8_row_pairs_two_threads(n, h, w, c, two_threads):
    """Rows of up to 64 floats run two output rows at a time (one image's); a thread's range
    (or an item team block at batch 1) may start or end at an odd row, and an odd image
    height leaves a single last row: each output as the oracle, and the same bits as at one
    thread."""
    import fastconv
    rng = np.random.default_rng(n + h + w + c)
    _check_all(rng, n, h, w, c, acts=("linear", "relu6"))
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    y2 = _C.conv2d_forward(x, wt, None, *ARGS(c))
    fastconv.set_num_threads(1)
    np.testing.assert_array_equal(_C.conv2d_forward(x, wt, None, *ARGS(c)), y2)
