"""The 3x3 stride-1 'same' conv of one channel in and out (groups 1) at the avx2 level as one
flat stream of the batch (csrc/cpu/few_channel_s1_c1.cpp, helper C, stop 39): forward, backward
data (forward widths 4..96) and the weight pass with db (widths 4..36), against the float64
reference, max |got - ref| <= 1e-5 x max |ref| (the weight pass: float lanes flushed to double
every 128 vectors; its sums over up to 200k pixels stay well inside that).

- odd sizes: rows of 4..7 columns (a vector spans rows), widths not a multiple of 8, 2-row
  images (no interior rows), batch 1, the sweep's shapes scaled down (7x7, 14x14, 28x28
  batches), and widths past the rule (the rows path again);
- bias and no bias, the fused activations (relu, relu6) and one applied after (sigmoid);
- two threads: forward and backward data the same bits as one thread;
- NaN and inf in x or dy land where the reference puts them (a lane at a row's first column
  reads the previous row's last pixel and drops it); a non-finite weight goes to the rows path,
  which multiplies the padding's zeros as the reference does.

At the baseline level (and AVX-512) the same shapes run the other levels' paths; the tests
hold there too.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

from conv_oracle import check_two_threads, close_max, same_nonfinite

SAME = (1, 1, 1, 1)
ARGS = ((1, 1), SAME, (1, 1), 1)


def _fwd(x, w, b, act=None):
    return _C.conv2d_forward(x, w, b, *ARGS) if act is None else _C.conv2d_forward(x, w, b, *ARGS, act)


def _check(rng, n, h, w, bias=True, weights=True):
    x = rng.standard_normal((n, h, w, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32) if bias else None
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    close_max(_fwd(x, wt, b), R.conv2d_forward(x64, w64, None if b is None else b.astype(np.float64), *ARGS))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dy64 = dy.astype(np.float64)
    close_max(_C.conv2d_backward_data(dy, wt, x.shape, *ARGS), R.conv2d_backward_data(dy64, w64, x.shape, *ARGS))
    if weights:
        dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *ARGS, True)
        rdw, rdb = R.conv2d_backward_weights(dy64, x64, wt.shape, *ARGS, True)
        close_max(dw, rdw)
        close_max(db, rdb)


def test_odd_shapes():
    rng = np.random.default_rng(101)
    shapes = ((2, 4), (3, 5), (7, 7), (2, 8), (5, 9), (9, 13), (14, 14), (13, 15), (17, 21), (28, 28),
              (31, 17), (3, 29), (11, 33), (6, 36), (5, 37), (7, 40), (4, 47), (9, 48), (5, 49), (4, 56),
              (3, 64), (2, 95), (3, 96), (2, 97), (2, 112), (1, 9), (9, 1), (1, 1), (2, 3))
    for i, (h, w) in enumerate(shapes):
        _check(rng, 1 + i % 3, h, w, bias=i % 2 == 0)


def test_sweep_shapes_scaled_down():
    rng = np.random.default_rng(102)
    for n, hw in ((64, 7), (37, 7), (33, 14), (16, 28), (1, 28), (1, 14), (5, 21), (3, 48)):
        _check(rng, n, hw, hw)


def test_weights_long_sums():
    """256 images of 28x28 (25088 vectors): the float lanes' flushes keep the sums accurate."""
    rng = np.random.default_rng(103)
    x = (rng.standard_normal((256, 28, 28, 1)) + 0.5).astype(np.float32)
    dy = (rng.standard_normal(x.shape) + 0.25).astype(np.float32)
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, 1, 1), *ARGS, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), (3, 3, 1, 1), *ARGS, True)
    close_max(dw, rdw)  # avx2: 5e-8 here (the baseline level's direct path: 3e-6)
    close_max(db, rdb)
    dw2, db2 = _C.conv2d_backward_weights(dy, x, (3, 3, 1, 1), *ARGS, False)
    np.testing.assert_array_equal(dw2, dw)
    assert db2 is None


@pytest.mark.parametrize("act", ("relu", "relu6", "sigmoid"))
def test_activation(act):
    rng = np.random.default_rng(104)
    x = (3 * rng.standard_normal((5, 14, 19, 1))).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *ARGS)
    ref = {"relu": lambda r: np.maximum(r, 0), "relu6": lambda r: np.clip(r, 0, 6),
           "sigmoid": lambda r: 1 / (1 + np.exp(-r))}[act](ref)
    close_max(_fwd(x, wt, b, act), ref)


@pytest.mark.parametrize("n,hw", ((64, 28), (1, 40), (200, 7), (3, 13)))
def test_threads_same_bits(n, hw):
    rng = np.random.default_rng(105)
    x = rng.standard_normal((n, hw, hw, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    check_two_threads(x, wt, b, ARGS)


@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("hw", ((9, 16), (7, 7), (12, 21)))
def test_non_finite_inputs(bad, hw):
    rng = np.random.default_rng(106)
    h, w = hw
    x = rng.standard_normal((3, h, w, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    x[1, 4, w - 1, 0] = bad  # the last column: the next row's first lane reads it and drops it
    x[2, 3, 0, 0] = bad  # the first column: the previous row's last lane reads it
    x[0, 0, 0, 0] = bad
    x[2, h - 1, 3, 0] = bad
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    same_nonfinite(_fwd(x, wt, None), R.conv2d_forward(x64, w64, None, *ARGS),
                   close_max)
    same_nonfinite(_C.conv2d_backward_data(x, wt, x.shape, *ARGS), R.conv2d_backward_data(x64, w64, x.shape, *ARGS),
                   close_max)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for a, b in ((dy, x), (x, dy)):  # non-finite x, then non-finite dy
        dw, db = _C.conv2d_backward_weights(a, b, wt.shape, *ARGS, True)
        rdw, rdb = R.conv2d_backward_weights(a.astype(np.float64), b.astype(np.float64), wt.shape, *ARGS, True)
        same_nonfinite(dw, rdw, close_max)
        same_nonfinite(db, rdb, close_max)


@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_non_finite_weight(bad):
    """A non-finite weight takes the rows path (depthwise_flat8, as before this kernel), which
    multiplies the padding's zeros too: the outputs whose window lies inside the image match
    the reference, the border is its own (non-finite)."""
    rng = np.random.default_rng(107)
    x = rng.standard_normal((2, 9, 20, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    wt[0, 2, 0, 0] = bad
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y = _fwd(x, wt, None)
    same_nonfinite(y[:, 1:-1, 1:-1], R.conv2d_forward(x64, w64, None, *ARGS)[:, 1:-1, 1:-1], close_max)
    assert not np.isfinite(y[:, 0]).any()
    dx = _C.conv2d_backward_data(x, wt, x.shape, *ARGS)
    same_nonfinite(dx[:, 1:-1, 1:-1], R.conv2d_backward_data(x64, w64, x.shape, *ARGS)[:, 1:-1, 1:-1], close_max)
