"""The strided 1x1 forward map with each x row's lines loaded before the row is mapped
(narrow_pointwise.cpp kTouchBytes, narrow_pointwise_common.h touch_lines; issue 18 item 3,
helper Y stop 36): 16..32 channels (the per-pixel map), stride 2, x rows read + y >= 8 MiB.
Against the float64 oracle (conv_oracle.close: rtol 1e-4, atol 1e-5 times the output's
magnitude), x 64-byte aligned (as the output pool hands it on) and not (numpy's default),
odd and even sizes, 'same' and 'valid' (no pads for a 1x1 window), batch 1 and > 1, one and
two threads; the touched values are discarded, so a NaN or inf in a pixel the stride skips
never reaches y, and one in a read pixel reaches exactly that output pixel."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from conv_oracle import close

ARGS = ((2, 2), (0, 0, 0, 0), (1, 1), 1)


def _aligned(a, offset_bytes):
    """A copy of a whose data starts offset_bytes past a 64-byte boundary."""
    buf = np.empty(a.size + 16, np.float32)
    first = ((offset_bytes - buf.ctypes.data) % 64) // 4
    out = buf[first:first + a.size].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 64 == offset_bytes
    return out


def _bytes_touched(n, h, w, c):
    oh = -(-h // 2)
    return 4 * (n * oh * w * c + n * oh * (-(-w // 2)) * c)


# (n, h, w, c): x rows read + y >= 8 MiB (the path's gate), odd and even sizes.
CASES = [(54, 57, 57, 16), (1, 301, 601, 16), (75, 56, 56, 20), (160, 28, 27, 24), (60, 29, 61, 32)]


@pytest.mark.parametrize("n, h, w, c", CASES)
@pytest.mark.parametrize("offset", [0, 16])
def test_touched_rows_match_oracle(n, h, w, c, offset):
    assert _bytes_touched(n, h, w, c) >= 8 << 20
    rng = np.random.default_rng(n + h + w + c)
    x = _aligned(rng.standard_normal((n, h, w, c)).astype(np.float32), offset)
    wt = rng.standard_normal((1, 1, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    y = _C.conv2d_forward(x, wt, b, *ARGS)
    if c <= 24:  # 25..32 channels: the map at AVX-512 only
        assert _C.conv_algorithm(x.shape, wt.shape, *ARGS)["forward"] == "direct"
    close(y, R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *ARGS))


def test_touched_rows_two_threads_equal_one():
    old = _C.get_num_threads()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((54, 57, 57, 16)).astype(np.float32)
    wt = rng.standard_normal((1, 1, 16, 16)).astype(np.float32)
    try:
        _C.set_num_threads(2)
        y2 = _C.conv2d_forward(x, wt, None, *ARGS)
        _C.set_num_threads(1)
        np.testing.assert_array_equal(_C.conv2d_forward(x, wt, None, *ARGS), y2)
    finally:
        _C.set_num_threads(old)
    close(y2, R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *ARGS))


@pytest.mark.parametrize("c", [16, 20, 24])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_touched_skipped_pixels_never_reach_y(c, bad):
    """Non-finite values in a skipped column, a skipped row and the last float of a row (all
    read by the touch, none by the conv) leave y finite; one in a read pixel gives exactly
    that output pixel's channels NaN (inf times weights of both signs) or inf."""
    n, h, w = (54, 57, 57) if c == 16 else (75, 56, 56) if c == 20 else (160, 28, 27)
    rng = np.random.default_rng(c)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = np.abs(rng.standard_normal((1, 1, c, c))).astype(np.float32) + 0.5  # positive: inf stays inf
    x[3, 4, 5, 0] = bad   # odd column: skipped
    x[n - 1, 1, 2, c - 1] = bad  # odd row: skipped
    x[7, 2, w - 1, c - 1] = bad if w % 2 == 0 else x[7, 2, w - 1, c - 1]  # last column, skipped if W even
    y = _C.conv2d_forward(x, wt, None, *ARGS)
    assert np.isfinite(y).all()
    x[5, 6, 8, 1] = bad  # read: output pixel (5, 3, 4)
    y = _C.conv2d_forward(x, wt, None, *ARGS)
    bad_out = ~np.isfinite(y)
    assert bad_out[5, 3, 4].all() and bad_out.sum() == c
    assert (np.isnan(y[5, 3, 4]).all() if np.isnan(bad) else np.isposinf(y[5, 3, 4]).all())
