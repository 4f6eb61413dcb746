"""Depthwise 3x3 stride 1 with few channels (csrc/cpu/depthwise_narrow.h, AVX-512, C <= 32 in
cache; C <= 64 on rows of up to 4096 floats): each channel block's sliding window along an output row, the input columns outside
the row read as zero vectors, the channels past the last 16 in an 8-lane vector (C % 16 in
1..8) or a masked 16-lane block (9..15). C < 16 with 'same' pads takes the flat path
(depthwise_flat.cpp); other pads come here. The forward and the backward data (the same
pass over dy, kernel flipped, pads mirrored: a pad of 3 mirrors to -1) against the float64
oracle; at the lower ISA levels the tiles run the same cases (they must pass there too).
Tolerances as in test_depthwise.py."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

CHANNELS = [1, 5, 8, 9, 15, 16, 17, 20, 23, 24, 25, 31, 32, 33, 40, 48, 57, 64, 65]


def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


def _ref_forward(x, wt, b, args, activation="linear"):
    """The float64 oracle's forward; relu6 (which it does not take) as min(relu, 6)."""
    z = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None if b is None else b.astype(np.float64),
                         *args, "relu" if activation == "relu6" else activation)
    return np.minimum(z, 6.0) if activation == "relu6" else z


# Pads: 'same' (both ends' new column read as zero), 'valid' (none), one-sided, 2 and 3 (the
# first output columns' new column still left of the row: the first checked range; backward
# data mirrors 3 to -1: the window starts inside the row).
PADS = [(1, 1, 1, 1), (0, 0, 0, 0), (1, 1, 2, 0), (0, 2, 0, 2), (2, 2, 2, 2), (3, 1, 3, 1)]


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("pads", PADS)
def test_narrow_rows_forward_and_backward_data(c, pads):
    rng = np.random.default_rng(c * 31 + sum(pads))
    for width in (1, 2, 3, 5, 7, 14):
        n, h = 1 + width % 2, 4 + width % 3
        args = ((1, 1), pads, (1, 1), c)
        if width + pads[2] + pads[3] < 3 or h + pads[0] + pads[1] < 3:
            continue
        x = (3 * rng.standard_normal((n, h, width, c))).astype(np.float32)
        wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32) if width % 2 else None
        for act in ("linear", "relu6"):
            y = _C.conv2d_forward(x, wt, b, *args, act)
            ref = _ref_forward(x, wt, b, args, act)
            _close(y, ref)
        assert (y == 6.0).any() or (ref < 6.0).all()
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
        _close(dx, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, *args))


@pytest.mark.parametrize("c", [16, 24, 32])
@pytest.mark.parametrize("hw", [7, 14, 28])
def test_narrow_rows_sweep_shapes(c, hw):
    """The sweep's shapes (3x3 'same', bias), batch 3, forward with sigmoid (applied on the
    row after it is stored) and relu, and the backward data."""
    rng = np.random.default_rng(hw + c)
    x = rng.standard_normal((3, hw, hw, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    for act in ("linear", "relu", "sigmoid"):
        _close(_C.conv2d_forward(x, wt, b, *args, act), _ref_forward(x, wt, b, args, act))
    dx = _C.conv2d_backward_data(x, wt, x.shape, *args)
    _close(dx, R.conv2d_backward_data(x.astype(np.float64), wt.astype(np.float64), x.shape, *args))


@pytest.mark.parametrize("c, ch", [(24, 20), (24, 3), (32, 31), (20, 19), (9, 8), (56, 50), (64, 47)])
@pytest.mark.parametrize("act", ["linear", "relu", "relu6"])
def test_narrow_rows_nan_reaches_its_window(c, ch, act):
    """A NaN in x at a row's first, interior and last column, in the 8-lane tail (c=24 ch 20,
    c=20 ch 19), the full block (ch 3), the masked block (c=9 ch 8), reaches exactly the 3x3
    outputs that read it, through relu / relu6 in registers; an inf in dy reaches its window
    of dx; all else matches the oracle."""
    rng = np.random.default_rng(c + ch)
    width = 14
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    wt = rng.uniform(0.5, 1.0, (3, 3, 1, c)).astype(np.float32)
    pads_valid = ((1, 1), (0, 0, 0, 0), (1, 1), c)
    for col in (0, 6, width - 1):
        x = rng.uniform(0.5, 1.0, (2, 5, width, c)).astype(np.float32)
        x[1, 2, col, ch] = np.nan
        y = _C.conv2d_forward(x, wt, None, *args, act)
        expect = np.zeros(y.shape, bool)
        expect[1, 1:4, max(col - 1, 0):col + 2, ch] = True
        np.testing.assert_array_equal(np.isnan(y), expect)
        ref = _ref_forward(x, wt, None, args, act)
        _close(np.where(expect, 0, y), np.where(expect, 0, ref))
        dy = x.copy()
        dy[1, 2, col, ch] = np.inf
        dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
        np.testing.assert_array_equal(np.isposinf(dx), expect)
        assert np.isfinite(dx[~expect]).all()
        # 'valid': the NaN's window clipped to the output (columns col-2..col).
        if c < 16:  # 'same' went to the flat path; 'valid' comes here
            yv = _C.conv2d_forward(x, wt, None, *pads_valid, act)
            ev = np.zeros(yv.shape, bool)
            ev[1, 0:3, max(col - 2, 0):min(col + 1, width - 2), ch] = True
            np.testing.assert_array_equal(np.isnan(yv), ev)


@pytest.mark.parametrize("c, width", [(64, 64), (64, 65), (48, 85), (48, 86), (33, 124), (33, 125), (32, 130)])
def test_narrow_rows_width_rule(c, width):
    """Both sides of the 4096-floats row rule for 32 < C <= 64 (the tiles past it), and a
    C = 32 row past it (still here): forward with bias and relu, backward data."""
    rng = np.random.default_rng(c * width)
    x = rng.standard_normal((2, 3, width, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    _close(_C.conv2d_forward(x, wt, b, *args, "relu"), _ref_forward(x, wt, b, args, "relu"))
    dx = _C.conv2d_backward_data(x, wt, x.shape, *args)
    _close(dx, R.conv2d_backward_data(x.astype(np.float64), wt.astype(np.float64), x.shape, *args))


def test_narrow_rows_two_threads(two_threads):
    """Lines split over two threads (ranges starting inside an image): the oracle, and the
    same bits as one thread."""
    rng = np.random.default_rng(5)
    for c in (16, 24, 32, 56):
        x = rng.standard_normal((5, 15, 13, c)).astype(np.float32)
        wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
        y2 = _C.conv2d_forward(x, wt, b, *args)
        _close(y2, _ref_forward(x, wt, b, args))
        old = _C.get_num_threads()
        _C.set_num_threads(1)
        try:
            y1 = _C.conv2d_forward(x, wt, b, *args)
        finally:
            _C.set_num_threads(old)
        np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("c", [5, 6, 7, 9, 12, 15])
@pytest.mark.parametrize("streamed", [False, True])
def test_few_channels_same_flat_or_narrow(c, streamed):
    """'same' 3x3 with C < 16: from C = 6 the narrow rows unless the output is streamed, then
    (and below 6) the flat rows (depthwise_flat.cpp); the stream threshold forced down to
    reach the flat pass on small arrays. Forward (bias, relu6) and backward data."""
    old = _C.get_stream_threshold()
    rng = np.random.default_rng(c + 100 * streamed)
    x = (3 * rng.standard_normal((3, 9, 13, c))).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    if streamed:
        _C.set_stream_threshold(4096)
    try:
        y = _C.conv2d_forward(x, wt, b, *args, "relu6")
        dx = _C.conv2d_backward_data(x, wt, x.shape, *args)
    finally:
        _C.set_stream_threshold(old)
    _close(y, _ref_forward(x, wt, b, args, "relu6"))
    _close(dx, R.conv2d_backward_data(x.astype(np.float64), wt.astype(np.float64), x.shape, *args))


@pytest.mark.parametrize("c", [16, 24, 40])
def test_narrow_rows_same_bits_as_the_tiles(c):
    """The narrow rows form each sum as the tiles do (bias and kernel row 0, rows 1 and 2,
    taps in kx order): the same bits as the tiles, reached here by streaming the output
    (the stream threshold forced down), with relu6 in registers."""
    old = _C.get_stream_threshold()
    rng = np.random.default_rng(c)
    x = (3 * rng.standard_normal((2, 11, 14, c))).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    narrow = _C.conv2d_forward(x, wt, b, *args, "relu6")
    _C.set_stream_threshold(4096)
    try:
        tiles = _C.conv2d_forward(x, wt, b, *args, "relu6")
    finally:
        _C.set_stream_threshold(old)
    np.testing.assert_array_equal(narrow, tiles)
    _close(narrow, _ref_forward(x, wt, b, args, "relu6"))
