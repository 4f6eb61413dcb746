"""The avx2 weight pass of 3x3 stride-1 'same' convs with C = 1, 3, 6 channels in and out
(csrc/cpu/few_channel_weights8.cpp, helper F, stop 38) against the float64 reference
(conv_oracle.close: rtol 1e-4, atol 1e-5 x the largest magnitude):

- odd sizes: rows under one vector (1..7 columns), rows with a partial last vector, one row,
  one column, batch 1..3, the sweep's shapes scaled down (7x7, 14x14, 28x28 batches);
- work items of several rows and an image split into several items (112 columns at C = 6);
- many small images: the float table flushed to double mid-batch;
- two threads: the same bits as a second call (fixed thread count);
- NaN and inf in x or dy: the call falls back to the direct path, which puts them where the
  reference has them.

At the baseline level (and AVX-512) the same shapes run the other levels' paths; the tests
hold there too.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from conv_oracle import close

SAME = (1, 1, 1, 1)
ARGS = ((1, 1), SAME, (1, 1), 1)


def _run(rng, n, h, w, c, bias=True):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    dy = rng.standard_normal((n, h, w, c)).astype(np.float32)
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, c, c), *ARGS, bias)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, c, c), *ARGS, bias)
    close(dw, rdw)
    if bias:
        close(db, rdb)
    else:
        assert db is None
    return x, dy, dw, db


@pytest.mark.parametrize("c", (1, 3, 6))
def test_odd_shapes(c):
    rng = np.random.default_rng(100 + c)
    shapes = ((1, 1), (1, 9), (11, 1), (3, 4), (5, 7), (7, 7), (5, 13), (9, 17), (6, 40),
              (14, 14), (28, 28), (33, 31), (4, 65))
    for i, (h, w) in enumerate(shapes):
        _run(rng, 1 + i % 3, h, w, c, bias=i % 2 == 0)


@pytest.mark.parametrize("c", (1, 3, 6))
def test_several_items_an_image(c):
    rng = np.random.default_rng(200 + c)
    _run(rng, 2, 23, 112, c)
    _run(rng, 1, 37, 97, c)


@pytest.mark.parametrize("c", (1, 3, 6))
def test_many_small_images(c):
    """Float table flushed to double every 8192 pixels: batches that flush mid-batch."""
    rng = np.random.default_rng(300 + c)
    for n, hw in ((300, 7), (97, 14), (9, 30)):
        _run(rng, n, hw, hw, c)


@pytest.mark.parametrize("c", (1, 3, 6))
def test_large_magnitude_sums(c):
    """A constant offset in x and dy: sums of same-sign terms over many pixels."""
    rng = np.random.default_rng(400 + c)
    x = (rng.standard_normal((40, 28, 28, c)) + 3.0).astype(np.float32)
    dy = (rng.standard_normal((40, 28, 28, c)) + 2.0).astype(np.float32)
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, c, c), *ARGS, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, c, c), *ARGS, True)
    close(dw, rdw)
    close(db, rdb)


@pytest.mark.parametrize("c", (1, 3, 6))
def test_threaded_and_deterministic(c):
    rng = np.random.default_rng(500 + c)
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        x, dy, dw, db = _run(rng, 64, 56, 56, c)
        dw2, db2 = _C.conv2d_backward_weights(dy, x, (3, 3, c, c), *ARGS, True)
        np.testing.assert_array_equal(dw, dw2)
        np.testing.assert_array_equal(db, db2)
    finally:
        _C.set_num_threads(old)


@pytest.mark.parametrize("c", (1, 3, 6))
@pytest.mark.parametrize("where", ("x", "dy"))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_non_finite(c, where, bad):
    rng = np.random.default_rng(600 + c)
    n, h, w = 2, 9, 13
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    dy = rng.standard_normal((n, h, w, c)).astype(np.float32)
    # on the last column (the kernel's zero lanes past the row meet it) and in the interior
    t = x if where == "x" else dy
    t[1, 4, w - 1, c - 1] = bad
    t[0, 0, 0, 0] = bad
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, c, c), *ARGS, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, c, c), *ARGS, True)
    np.testing.assert_array_equal(np.isnan(dw), np.isnan(rdw))
    np.testing.assert_array_equal(np.isinf(dw), np.isinf(rdw))
    fin = np.isfinite(rdw)
    close(np.where(fin, dw, 0).astype(np.float32), np.where(fin, rdw, 0))
    np.testing.assert_array_equal(np.isnan(db), np.isnan(rdb))
