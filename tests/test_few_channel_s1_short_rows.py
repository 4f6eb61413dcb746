"""3x3 stride-1 'same' convs with C = 3 and 6 channels in and out on rows under 8 pixels at the
avx2 level (helper C, stop 39): few_channel_fwd8.cpp (forward, backward data) and
few_channel_weights8.cpp (weights + db) split such a row straight from the tensor (8 pixels:
the next row's first ones too, their lanes zeroed) and merge it back with 8-pixel stores,
except where 8 pixels would run past the tensor (its last row) or into another item (an
item's last output row). Against the float64 reference, max |got - ref| <= 1e-5 x max |ref|:

- widths 1..7 (and 8, 9 beside them), heights 1..9, batch 1..70 (items of many images, a
  short last item, an image whose last row ends the tensor), the sweep's 7x7 N=256 scaled down;
- bias and no bias, relu / relu6;
- two threads: forward and backward data the same bits as one, weights within rounding;
- NaN and inf in x or dy (also in the last pixels of a row, which the row before reads and
  drops) reach what the reference gives (the weight pass falls back to the direct path).

At the baseline level the same shapes run the other paths; the tests hold there too.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

from conv_oracle import check_two_threads, close_max, same_nonfinite

SAME = (1, 1, 1, 1)
ARGS = ((1, 1), SAME, (1, 1), 1)


def _check(rng, n, h, w, c, bias=True, act=None):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    ref = R.conv2d_forward(x64, w64, None if b is None else b.astype(np.float64), *ARGS)
    if act is None:
        y = _C.conv2d_forward(x, wt, b, *ARGS)
    else:
        y = _C.conv2d_forward(x, wt, b, *ARGS, act)
        ref = np.maximum(ref, 0) if act == "relu" else np.clip(ref, 0, 6)
    close_max(y, ref)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dy64 = dy.astype(np.float64)
    close_max(_C.conv2d_backward_data(dy, wt, x.shape, *ARGS), R.conv2d_backward_data(dy64, w64, x.shape, *ARGS))
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *ARGS, True)
    rdw, rdb = R.conv2d_backward_weights(dy64, x64, wt.shape, *ARGS, True)
    close_max(dw, rdw)
    close_max(db, rdb)


@pytest.mark.parametrize("c", (3, 6))
def test_short_rows(c):
    rng = np.random.default_rng(200 + c)
    shapes = ((1, 1), (2, 1), (1, 2), (3, 3), (5, 4), (4, 5), (7, 6), (7, 7), (9, 7), (1, 7), (6, 8), (5, 9))
    for i, (h, w) in enumerate(shapes):
        for n in (1, 2, 5):
            _check(rng, n, h, w, c, bias=(i + n) % 2 == 0)


@pytest.mark.parametrize("c", (3, 6))
def test_many_images(c):
    """Items of many whole images, a short last item; the tensor's last row is short."""
    rng = np.random.default_rng(210 + c)
    for n, hw in ((70, 7), (33, 5), (64, 4), (17, 3)):
        _check(rng, n, hw, hw, c)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("act", ("relu", "relu6"))
def test_activation(c, act):
    rng = np.random.default_rng(220 + c)
    _check(rng, 9, 7, 7, c, act=act)
    _check(rng, 3, 6, 5, c, bias=False, act=act)


@pytest.mark.parametrize("c", (3, 6))
def test_threads(c):
    rng = np.random.default_rng(230 + c)
    x = rng.standard_normal((256, 7, 7, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    check_two_threads(x, wt, b, ARGS)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_non_finite(c, bad):
    rng = np.random.default_rng(240 + c)
    n, h, w = 4, 7, 7
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    x[1, 2, 0, 1] = bad  # a row's first pixel: the row before reads it past its end
    x[2, h - 1, w - 1, c - 1] = bad  # an image's last pixel: the next image's first row reads past it
    x[n - 1, h - 1, 3, 0] = bad  # the tensor's last row
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    same_nonfinite(_C.conv2d_forward(x, wt, None, *ARGS), R.conv2d_forward(x64, w64, None, *ARGS),
                   close_max)
    same_nonfinite(_C.conv2d_backward_data(x, wt, x.shape, *ARGS), R.conv2d_backward_data(x64, w64, x.shape, *ARGS),
                   close_max)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for a, b in ((dy, x), (x, dy)):
        dw, db = _C.conv2d_backward_weights(a, b, wt.shape, *ARGS, True)
        rdw, rdb = R.conv2d_backward_weights(a.astype(np.float64), b.astype(np.float64), wt.shape, *ARGS, True)
        same_nonfinite(dw, rdw, close_max)
        same_nonfinite(db, rdb, close_max)
