"""Softmax forward at 1..8 classes, 32 or 16 rows a step (csrc/cpu/softmax_fwd_planes.cpp, the
avx2 level: 4 registers of rows to 4 classes, 2 from 5; the rows left over take softmax.cpp's
planes path and tile, as every row at the other levels).

The steps must give the one-block planes path's results bit for bit (the same operations per
lane in the same order): each row of a batched call is compared bitwise with the same rows
softmaxed in a call of fewer than 16 rows (which never takes the steps). Also every width 1..8 at
row counts around the step sizes against the float64 oracle (rtol 1e-6 / atol 1e-7, row sums 1 to
1e-6), the sweep's few-channel shapes scaled down through F.softmax (batch 1, odd sizes),
1 thread = 3 threads bitwise, NaN / +-inf / whole rows of -inf or NaN, huge equal logits, spreads
down to exp's underflow.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import functional as F

import seeds
from softmax_oracle import oracle, same_bits, threads_same_bits, with_threads

RTOL, ATOL = 1e-6, 1e-7
ROWS = (1, 8, 15, 16, 17, 31, 32, 33, 47, 64, 100, 257)


def _rng(*parts):
    return np.random.default_rng(seeds.seed_of("softmax_fwd_planes", *parts))


def _in_small_calls(x):
    """Softmax in calls of at most 8 rows: the one-block planes path and the tile only."""
    return np.concatenate([_C.softmax_forward(np.ascontiguousarray(x[i:i + 8])) for i in range(0, x.shape[0], 8)])


@pytest.mark.parametrize("c", list(range(1, 9)))
def test_every_width_matches_oracle_and_the_one_block_path(c):
    rng = _rng("width", c)
    for rows in ROWS:
        x = (3 * rng.standard_normal((rows, c)) + rng.uniform(-20, 20, (rows, 1))).astype(np.float32)
        y = with_threads(1, lambda: _C.softmax_forward(x))
        np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
        same_bits(y, _in_small_calls(x))


@pytest.mark.parametrize("shape", [(1, 28, 28, 3), (2, 14, 14, 3), (1, 13, 11, 6), (3, 7, 7, 6), (1, 9, 9, 1),
                                   (2, 5, 7, 2), (1, 11, 5, 4), (1, 6, 6, 5), (2, 3, 9, 7), (1, 7, 7, 8)])
def test_sweep_shapes_scaled_down(shape):
    x = (4 * _rng("shape", shape).standard_normal(shape)).astype(np.float32)
    y = F.softmax(x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)
    c = shape[-1]
    same_bits(y.reshape(-1, c), _in_small_calls(x.reshape(-1, c)))


@pytest.mark.parametrize("c", list(range(1, 9)))
def test_threads_give_the_same_bits(c):
    rows = 80_000 // c + 21  # over the threading grain; a rest of rows after the steps
    x = (4 * _rng("threads", c).standard_normal((rows, c))).astype(np.float32)
    threads_same_bits(x, RTOL, ATOL)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the oracle's inf - inf
@pytest.mark.parametrize("c", list(range(1, 9)))
def test_nan_and_inf(c):
    rng = _rng("special", c)
    x = rng.standard_normal((40, c)).astype(np.float32)
    last = c - 1
    x[0, last] = np.nan
    x[17, 0] = np.nan  # in the second register of a step
    x[3, last] = np.inf  # inf - inf: the row NaN
    x[21, last] = -np.inf  # that class 0 (the rest finite unless c == 1)
    x[6, :] = -np.inf  # max -inf: -inf - -inf is NaN
    x[33, :] = np.nan  # in the rows left over (40 = 32 + 8 or 2 * 16 + 8)
    x[9, :] = 1e30  # equal huge logits: exactly uniform
    x[26, last] = 80.0
    y = with_threads(1, lambda: _C.softmax_forward(x))
    same_bits(y, _in_small_calls(x))
    for r in (0, 17, 3, 6, 33):
        assert np.isnan(y[r]).all(), r
    if c > 1:
        assert y[21, last] == 0 and not np.isnan(y[21]).any()
        assert y[26, last] == pytest.approx(1.0, rel=1e-6)
    else:
        assert np.isnan(y[21]).all()  # its only class -inf: -inf - -inf
    np.testing.assert_allclose(y[9], 1.0 / c, rtol=1e-6)
    np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("c", [2, 3, 6, 8])
def test_spreads_down_to_underflow(c):
    rng = _rng("spread", c)
    x = -rng.uniform(0, 200, (96, c)).astype(np.float32)
    x[:, c - 1] = 0.0
    y = with_threads(1, lambda: _C.softmax_forward(x))
    np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)
    assert (y >= 0).all() and np.isfinite(y).all()
    assert (y[x < -110] == 0).all()
    same_bits(y, _in_small_calls(x))
