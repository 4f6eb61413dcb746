"""The avx2 forward and backward data of 3x3 stride-1 'same' convs with C = 3 and 6 channels in
and out (csrc/cpu/few_channel_fwd8.cpp, helper F, stop 38) against the float64 reference
(conv_oracle.close: rtol 1e-4, atol 1e-5 x the largest magnitude):

- odd sizes: rows under one vector (1..7 columns), a partial last vector, one row, one column,
  batch 1..3, the sweep's shapes scaled down (7x7, 14x14, 28x28 batches);
- work items of several rows, an image split into several items (112 columns), whole small
  images several to an item (the zero row between two images);
- bias and no bias, the fused activations (relu, relu6);
- two threads: the same bits as one;
- NaN and inf in x or dy reach the outputs the reference gives them; a non-finite weight
  falls back to the direct path.

At the baseline level (and AVX-512) the same shapes run the other levels' paths; the tests
hold there too.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from conv_oracle import check_two_threads, close, same_nonfinite

SAME = (1, 1, 1, 1)
ARGS = ((1, 1), SAME, (1, 1), 1)


def _fwd(x, w, b, act=None):
    return _C.conv2d_forward(x, w, b, *ARGS) if act is None else _C.conv2d_forward(x, w, b, *ARGS, act)


def _check(rng, n, h, w, c, bias=True):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    y = _fwd(x, wt, b)
    close(y, R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                              None if b is None else b.astype(np.float64), *ARGS))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *ARGS)
    close(dx, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, *ARGS))
    return x, wt, b, dy, y, dx


@pytest.mark.parametrize("c", (3, 6))
def test_odd_shapes(c):
    rng = np.random.default_rng(10 + c)
    shapes = ((1, 1), (1, 9), (11, 1), (3, 4), (5, 7), (7, 7), (5, 13), (9, 17), (6, 40),
              (14, 14), (15, 14), (28, 28), (33, 31), (4, 65))
    for i, (h, w) in enumerate(shapes):
        _check(rng, 1 + i % 3, h, w, c, bias=i % 2 == 0)


@pytest.mark.parametrize("c", (3, 6))
def test_items(c):
    rng = np.random.default_rng(20 + c)
    _check(rng, 2, 23, 112, c)  # several items an image
    _check(rng, 1, 37, 97, c)
    _check(rng, 37, 14, 14, c)  # several images an item, a short last item
    _check(rng, 50, 7, 7, c)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("act", ("relu", "relu6"))
def test_activation(c, act):
    rng = np.random.default_rng(30 + c)
    x = (3 * rng.standard_normal((5, 14, 19, c))).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *ARGS)
    ref = np.maximum(ref, 0) if act == "relu" else np.clip(ref, 0, 6)
    close(_fwd(x, wt, b, act), ref)


@pytest.mark.parametrize("c", (3, 6))
def test_threads_same_bits(c):
    rng = np.random.default_rng(40 + c)
    x = rng.standard_normal((64, 28, 28, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    check_two_threads(x, wt, b, ARGS, weights=False)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_non_finite_inputs(c, bad):
    rng = np.random.default_rng(50 + c)
    n, h, w = 2, 9, 16
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    x[1, 4, w - 1, c - 1] = bad  # the last column: the row's slot has garbage lanes next to it
    x[0, 0, 0, 0] = bad
    x[1, h - 1, 3, 1] = bad
    same_nonfinite(_fwd(x, wt, None), R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *ARGS))
    same_nonfinite(_C.conv2d_backward_data(x, wt, x.shape, *ARGS),
                  R.conv2d_backward_data(x.astype(np.float64), wt.astype(np.float64), x.shape, *ARGS))


@pytest.mark.parametrize("c", (3, 6))
def test_non_finite_weight(c):
    """A non-finite weight goes to the direct path (as before this kernel, whose NaN and inf
    at the borders are its own): the channels it does not touch match the reference."""
    rng = np.random.default_rng(60 + c)
    x = rng.standard_normal((2, 9, 16, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    wt[0, 2, 1, 0] = np.inf  # input channel 1 -> output channel 0
    y = _fwd(x, wt, None)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *ARGS)
    close(y[..., 1:], ref[..., 1:])
    assert not np.isfinite(y[..., 0]).all()
    dx = _C.conv2d_backward_data(x, wt, x.shape, *ARGS)
    rdx = R.conv2d_backward_data(x.astype(np.float64), wt.astype(np.float64), x.shape, *ARGS)
    keep = [k for k in range(c) if k != 1]
    close(dx[..., keep], rdx[..., keep])
    assert not np.isfinite(dx[..., 1]).all()
