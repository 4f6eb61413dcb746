"""Depthwise 3x3 stride 1 below AVX-512 (csrc/cpu/depthwise_regtile.h: register tiles of 8
output columns x one register of channels, the last tile of a row 1..7 columns, the channels
past the last whole register through a zeroed register): forward (bias, activations) and the
backward data (the same pass over dy, kernel flipped, pads mirrored) against the float64
oracle, on widths that end a row in every tile size, channel counts with and without a
partial register, batch 1 and more, the sweep's shapes scaled down, and NaN / inf reaching
exactly the windows that read them. At AVX-512 the 16-lane tiles and narrow rows run the same
cases (they must pass there too). Tolerances as in test_depthwise.py: 1e-4 relative, 1e-5 of
the output's magnitude absolute."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R


def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


def _ref_forward(x, wt, b, args, activation="linear"):
    z = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None if b is None else b.astype(np.float64),
                         *args, "relu" if activation == "relu6" else activation)
    return np.minimum(z, 6.0) if activation == "relu6" else z


def _ref_dx(dy, wt, shape, args):
    return R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), shape, *args)


CHANNELS = [1, 3, 4, 6, 8, 12, 16, 20, 24, 36, 48, 64, 72, 96, 100]
PADS = [(1, 1, 1, 1), (0, 0, 0, 0), (1, 1, 2, 0), (0, 2, 0, 2), (2, 2, 2, 2), (3, 1, 3, 1)]


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("pads", PADS)
def test_regtile_forward_and_backward_data(c, pads):
    rng = np.random.default_rng(c * 37 + sum(pads) * 5 + pads[2])
    for width in (1, 2, 3, 7, 8, 9, 10, 15, 16, 17, 23):
        n, h = 1 + width % 2, 3 + width % 4
        if width + pads[2] + pads[3] < 3 or h + pads[0] + pads[1] < 3:
            continue
        args = ((1, 1), pads, (1, 1), c)
        x = (3 * rng.standard_normal((n, h, width, c))).astype(np.float32)
        wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32) if width % 2 else None
        for act in ("linear", "relu6", "sigmoid"):
            _close(_C.conv2d_forward(x, wt, b, *args, act), _ref_forward(x, wt, b, args, act))
        y = _C.conv2d_forward(x, wt, b, *args)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        _close(_C.conv2d_backward_data(dy, wt, x.shape, *args), _ref_dx(dy, wt, x.shape, args))


# The sweep's slow shapes, scaled down (N, H=W, C): 112x112 C=48..128 -> 37 wide, 56x56x512 and
# 28x28x512 -> 19 / 11 wide with 96..256 channels, N=32 14x14x96 -> batch 5, 7x7x512 -> 7x7x136.
SWEEP = [(1, 37, 48), (1, 37, 64), (1, 29, 96), (1, 21, 128), (1, 19, 256), (1, 11, 200), (5, 14, 96),
         (3, 7, 136), (4, 7, 64), (2, 14, 24), (1, 112, 8)]


@pytest.mark.parametrize("n, hw, c", SWEEP)
def test_regtile_sweep_shapes(n, hw, c):
    rng = np.random.default_rng(n * 1000 + hw * 10 + c)
    x = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    for act in ("linear", "relu"):
        _close(_C.conv2d_forward(x, wt, b, *args, act), _ref_forward(x, wt, b, args, act))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _close(_C.conv2d_backward_data(dy, wt, x.shape, *args), _ref_dx(dy, wt, x.shape, args))


def test_regtile_unaligned_input():
    """x one float past an aligned start (every load splits lines differently)."""
    rng = np.random.default_rng(5)
    n, hw, c = 1, 13, 40
    buf = np.empty(n * hw * hw * c + 1, np.float32)
    x = buf[1:].reshape(n, hw, hw, c)
    x[...] = rng.standard_normal(x.shape)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    _close(_C.conv2d_forward(x, wt, None, *args), _ref_forward(x, wt, None, args))


def test_regtile_streamed_rows():
    """The streamed output (the row filled in a buffer, then copied out): threshold lowered."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 9, 21, 24)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 24)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 24)
    old = _C.get_stream_threshold()
    try:
        _C.set_stream_threshold(1024)
        y = _C.conv2d_forward(x, wt, b, *args)
        dx = _C.conv2d_backward_data(x, wt, x.shape, *args)
    finally:
        _C.set_stream_threshold(old)
    _close(y, _ref_forward(x, wt, b, args))
    _close(dx, _ref_dx(x, wt, x.shape, args))


@pytest.mark.parametrize("c, ch", [(24, 20), (24, 3), (8, 7), (12, 9), (64, 47), (6, 5)])
@pytest.mark.parametrize("col", [0, 7, 8, 12, 16])
def test_regtile_nan_reaches_its_window(c, ch, col):
    """A NaN in x at a tile's first / last / interior column and a row's ends reaches exactly
    the 3x3 outputs that read it (forward), an inf in dy its window of dx; all else finite and
    matching the oracle."""
    rng = np.random.default_rng(c * 7 + ch + col)
    width = 17
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    wt = rng.uniform(0.5, 1.0, (3, 3, 1, c)).astype(np.float32)
    x = rng.uniform(0.5, 1.0, (2, 5, width, c)).astype(np.float32)
    x[1, 2, col, ch] = np.nan
    y = _C.conv2d_forward(x, wt, None, *args)
    expect = np.zeros(y.shape, bool)
    expect[1, 1:4, max(col - 1, 0):col + 2, ch] = True
    np.testing.assert_array_equal(np.isnan(y), expect)
    _close(np.where(expect, 0, y), np.where(expect, 0, _ref_forward(x, wt, None, args)))
    dy = x.copy()
    dy[1, 2, col, ch] = np.inf
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    np.testing.assert_array_equal(np.isposinf(dx), expect)
    assert np.isfinite(dx[~expect]).all()


def test_regtile_nan_weight():
    """A NaN weight of one channel makes that channel's outputs NaN (every output reads all 9
    taps, padding columns included as zeros times the weight), the others untouched."""
    rng = np.random.default_rng(3)
    c = 24
    x = rng.standard_normal((1, 6, 11, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    wt[1, 1, 0, 9] = np.nan
    args = ((1, 1), (0, 0, 0, 0), (1, 1), c)
    y = _C.conv2d_forward(x, wt, None, *args)
    assert np.isnan(y[..., 9]).all()
    keep = np.arange(c) != 9
    _close(y[..., keep], _ref_forward(x, wt, None, args)[..., keep])


def test_regtile_two_threads():
    """Lines split between two threads give the one-thread result to the bit."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 40, 40, 48)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 48)).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 48)
    before = _C.get_num_threads()
    try:
        _C.set_num_threads(1)
        y1 = _C.conv2d_forward(x, wt, None, *args)
        _C.set_num_threads(2)
        y2 = _C.conv2d_forward(x, wt, None, *args)
    finally:
        _C.set_num_threads(before)
    np.testing.assert_array_equal(y1, y2)
    _close(y1, _ref_forward(x, wt, None, args))


@pytest.mark.parametrize("c", [3, 8, 16, 24, 40, 64, 72, 100])
@pytest.mark.parametrize("pads", [(0, 1, 0, 1), (1, 1, 1, 1), (0, 0, 0, 0), (1, 0, 2, 1)])
def test_regtile_stride2_forward(c, pads):
    """Stride 2 (MobileNet's downsampling steps: pads (0, 1, 0, 1) after ZeroPadding2D), the
    tiles reading 2 * P + 1 input columns (avx2, C >= 64; the block walk below), widths ending
    in every tile size, with relu6."""
    rng = np.random.default_rng(c * 13 + sum(pads) + pads[2])
    for width in (2, 3, 5, 8, 9, 11, 16, 17, 30):
        n, h = 1 + width % 2, 5 + width % 3
        if width + pads[2] + pads[3] < 3 or h + pads[0] + pads[1] < 3:
            continue
        args = ((2, 2), pads, (1, 1), c)
        x = (3 * rng.standard_normal((n, h, width, c))).astype(np.float32)
        wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32) if width % 2 else None
        for act in ("linear", "relu6"):
            _close(_C.conv2d_forward(x, wt, b, *args, act), _ref_forward(x, wt, b, args, act))


def test_regtile_stride2_nan():
    """A NaN in x reaches exactly the stride-2 outputs whose window holds it."""
    rng = np.random.default_rng(23)
    c, width = 72, 17
    args = ((2, 2), (1, 1, 1, 1), (1, 1), c)
    wt = rng.uniform(0.5, 1.0, (3, 3, 1, c)).astype(np.float32)
    for col in (0, 7, 8, 9, 16):
        x = rng.uniform(0.5, 1.0, (1, 7, width, c)).astype(np.float32)
        x[0, 3, col, 5] = np.nan
        y = _C.conv2d_forward(x, wt, None, *args)
        expect = np.zeros(y.shape, bool)
        for oy in range(y.shape[1]):
            for ox in range(y.shape[2]):
                if 0 <= 3 - (2 * oy - 1) < 3 and 0 <= col - (2 * ox - 1) < 3:
                    expect[0, oy, ox, 5] = True
        np.testing.assert_array_equal(np.isnan(y), expect)
