"""Softmax backward with each row in registers (csrc/cpu/softmax_rows_backward.cpp, the avx2
level's 9..64 classes: K = ceil(C / 8) registers, the last one the row's last 8 floats
overlapping the one before unless C % 8 == 0; and C = 6, four rows in three registers, the
last n % 4 rows on the planes path); at avx512 and baseline the same cases run softmax.cpp's
own paths, against the same oracle.

Every width 5..72 (each register count 2..8 with every tail, and the neighbours on the planes
path and the row loop), row counts 1, 2, 7 and a few hundred; the sweep's shapes scaled down
through F.softmax_backward on NHWC arrays (batch 1, odd sizes); 1 thread against 3 (rows are
independent: the same bits); NaN and inf in dy and y, in the overlapped and the tail lanes.

Tolerance: dx = y * (dy - d) with d = sum(dy * y) over the row; d's float sum of <= 64 terms
errs by ~C * 2^-24 * sum|dy * y|, so each element is checked against the float64 oracle to
1e-6 * |y| * (|dy| + sum|dy * y|) (1e-5 relative to the magnitudes of the terms, tighter) plus
rtol 1e-6.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import functional as F
from fastconv import reference as R

import seeds

WIDTHS = list(range(5, 73))


def _rng(*parts):
    return np.random.default_rng(seeds.seed_of("softmax_rows_backward", *parts))


def _check(dx, dy, y):
    dy2 = dy.reshape(-1, dy.shape[-1]).astype(np.float64)
    y2 = y.reshape(-1, y.shape[-1]).astype(np.float64)
    ref = R.softmax_backward(dy2, y2).reshape(dy.shape)
    scale = (np.abs(y2) * (np.abs(dy2) + np.abs(dy2 * y2).sum(axis=1, keepdims=True))).reshape(dy.shape)
    err = np.abs(dx.astype(np.float64) - ref)
    assert np.all(err <= 1e-6 * scale + 1e-6 * np.abs(ref) + 1e-30), float(np.max(err - 1e-6 * scale))


def _pair(rng, shape):
    """A softmax output y (rows summing to 1, spread out) and a gradient dy."""
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    y = F.softmax(x)
    dy = rng.standard_normal(shape).astype(np.float32)
    return dy, y


def _with_threads(n, fn):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(n)
    try:
        return fn()
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("c", WIDTHS)
def test_every_width_matches_oracle(c):
    rng = _rng("width", c)
    for rows in (1, 2, 3, 4, 5, 7, 8, 301):
        dy, y = _pair(rng, (rows, c))
        dx = _C.softmax_backward(dy, y)
        assert dx.shape == (rows, c) and dx.dtype == np.float32
        _check(dx, dy, y)
        # dy and y of any magnitude (not only a softmax's y): the same formula
        y2 = (4 * rng.standard_normal((rows, c))).astype(np.float32)
        dy2 = (1e3 * rng.standard_normal((rows, c))).astype(np.float32)
        _check(_C.softmax_backward(dy2, y2), dy2, y2)


@pytest.mark.parametrize("shape", [(1, 14, 14, 16), (2, 7, 7, 16), (3, 5, 9, 16), (1, 11, 13, 12),
                                   (2, 9, 9, 9), (1, 5, 7, 24), (1, 6, 6, 40), (2, 3, 5, 64),
                                   (1, 13, 3, 33), (1, 1, 1, 16), (1, 28, 28, 6), (2, 7, 5, 6)])
def test_sweep_shapes_scaled_down(shape):
    """The sweep's per-pixel softmax backward (rows N*H*W) through the functional call."""
    dy, y = _pair(_rng("shape", shape), shape)
    dx = F.softmax_backward(dy, y)
    assert dx.shape == shape
    _check(dx, dy, y)


@pytest.mark.parametrize("c", [6, 9, 12, 15, 16, 17, 24, 31, 32, 33, 40, 57, 64])
def test_threads_give_the_same_bits(c):
    rows = 40_000 // c + 13  # over the threading grain; shares end mid-way
    dy, y = _pair(_rng("threads", c), (rows, c))
    one = _with_threads(1, lambda: _C.softmax_backward(dy, y))
    three = _with_threads(3, lambda: _C.softmax_backward(dy, y))
    np.testing.assert_array_equal(one, three)
    _check(one, dy, y)


@pytest.mark.parametrize("c", [6, 9, 13, 16, 23, 24, 25, 32, 39, 64])
@pytest.mark.parametrize("where", ["first", "overlap", "last", "dy_inf"])
def test_nan_and_inf_make_their_row_nan(c, where):
    """A NaN in a row's dy or y: that row of dx is all NaN (d is NaN), as in the oracle; an inf
    in dy: d is inf, its own class NaN (inf - inf) and the others -inf, as in the oracle; the
    other rows untouched."""
    rng = _rng("nan", c, where)
    dy, y = _pair(rng, (9, c))
    col = {"first": 0, "overlap": max(0, (c // 8) * 8 - 1) if c % 8 else c - 8, "last": c - 1, "dy_inf": c // 2}[where]
    if where == "dy_inf":
        dy[4, col] = np.inf
    else:
        y[4, col] = np.nan
        dy[6, col] = np.nan
    dx = _C.softmax_backward(dy, y)
    with np.errstate(invalid="ignore"):
        ref = R.softmax_backward(dy.astype(np.float64), y.astype(np.float64))
    bad = [4] if where == "dy_inf" else [4, 6]
    np.testing.assert_array_equal(np.isnan(dx[bad]), np.isnan(ref[bad]))
    np.testing.assert_array_equal(dx[bad][~np.isnan(ref[bad])], ref[bad][~np.isnan(ref[bad])])
    if where != "dy_inf":
        assert np.isnan(dx[bad]).all()
    good = [r for r in range(9) if r not in bad]
    _check(dx[good], dy[good], y[good])


def test_zero_rows_and_empty():
    y = np.zeros((0, 16), np.float32)
    assert _C.softmax_backward(y, y).shape == (0, 16)
    dy, y = _pair(_rng("one"), (1, 1, 1, 16))
    _check(F.softmax_backward(dy, y), dy, y)
