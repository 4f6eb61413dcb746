"""Softmax forward on blocks of rows in three passes (csrc/cpu/softmax_fwd_blocks.cpp: the avx2
level's 9..128 classes, rows in whole groups of 8; the rest of the rows, and every other level,
take the paths of test_softmax_rows.py, against the same oracle).

The blocks must give the row path's results bit for bit (the same max, exp operations, lane
sums in the same order, 1 / sum): every row of a batched call is compared bitwise with the same
row softmaxed alone (n = 1 always takes the one-row path). Also: every width 9..128 (each
register count 2..16 with each tail) at row counts around the block sizes (8 .. 64 rows a
block, a partial last block, 1..7 rows left over), against the float64 oracle; the sweep's
C = 16 shapes scaled down (odd sizes, batch 1) through F.softmax; 1 thread = 3 threads bitwise;
NaN / +-inf in the first register, in the overlapping last register (in its own lanes and in
the lanes it repeats from the register before), whole rows of -inf / NaN, huge equal logits;
spreads down to exp's underflow.

Tolerance: rtol 1e-6 / atol 1e-7 against float64 (exp_lanes is a few ulp, the row's sum a float
sum of <= 128 terms: the observed error is ~3e-7 relative), row sums 1 to 1e-6.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import functional as F

import seeds
from softmax_oracle import oracle, same_bits, threads_same_bits, with_threads

RTOL, ATOL = 1e-6, 1e-7
# rows: one group of 8, 8 + a row left over, a block of 64 (c <= 32) and 65, block sizes at the
# wider rows (2048 / c rounded down to 8: 56 at 33..36, 16 at 128), partial blocks, 1..7 left
ROWS = (8, 9, 15, 16, 63, 64, 65, 71, 127, 129, 200)


def _rng(*parts):
    return np.random.default_rng(seeds.seed_of("softmax_fwd_blocks", *parts))


def _one_at_a_time(x):
    return np.concatenate([_C.softmax_forward(np.ascontiguousarray(x[i:i + 1])) for i in range(x.shape[0])])


@pytest.mark.parametrize("c", list(range(9, 129)))
def test_every_width_matches_oracle_and_the_row_path(c):
    rng = _rng("width", c)
    for rows in ROWS:
        x = (3 * rng.standard_normal((rows, c)) + rng.uniform(-20, 20, (rows, 1))).astype(np.float32)
        y = with_threads(1, lambda: _C.softmax_forward(x))
        np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
        if rows in (9, 71, 200):
            same_bits(y, _one_at_a_time(x))


@pytest.mark.parametrize("shape", [(1, 28, 28, 16), (2, 14, 14, 16), (3, 7, 7, 16), (1, 13, 11, 16),
                                   (1, 5, 3, 16), (2, 9, 7, 12), (1, 11, 9, 24), (1, 7, 5, 40),
                                   (2, 5, 5, 100), (1, 3, 7, 128), (1, 2, 2, 16)])
def test_sweep_shapes_scaled_down(shape):
    """The sweep's per-pixel softmax over C (rows N*H*W) through the functional call."""
    x = (4 * _rng("shape", shape).standard_normal(shape)).astype(np.float32)
    y = F.softmax(x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)
    if shape[0] * shape[1] * shape[2] <= 400:
        same_bits(y.reshape(-1, shape[-1]), _one_at_a_time(x.reshape(-1, shape[-1])))


@pytest.mark.parametrize("c", [9, 12, 16, 20, 24, 32, 33, 48, 64, 65, 100, 128])
def test_threads_give_the_same_bits(c):
    rows = 60_000 // c + 13  # over the threading grain; blocks shared out, a partial one, a rest
    x = (4 * _rng("threads", c).standard_normal((rows, c))).astype(np.float32)
    threads_same_bits(x, RTOL, ATOL)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the oracle's inf - inf
@pytest.mark.parametrize("c", [9, 13, 16, 17, 23, 24, 32, 39, 64, 71, 127, 128])
def test_nan_and_inf_in_blocks(c):
    rng = _rng("special", c)
    x = rng.standard_normal((24, c)).astype(np.float32)
    last = c - 1  # the overlapping last register's own lanes
    shared = c - 8  # a class the last register repeats from the one before (unless c % 8 == 0)
    x[0, last] = np.nan
    x[1, 0] = np.nan  # first register
    x[2, shared] = np.nan
    x[3, last] = np.inf  # inf - inf: the row NaN
    x[4, shared] = np.inf
    x[5, last] = -np.inf  # that class 0, the rest finite
    x[6, :] = -np.inf  # max -inf: -inf - -inf is NaN
    x[7, :] = np.nan
    x[9, shared] = 80.0  # one class far above the others (theirs ~1e-35)
    x[10, :] = 1e30  # equal huge logits: exactly uniform
    x[11, :last] = -1e30
    x[12, shared] = -np.inf
    y = with_threads(1, lambda: _C.softmax_forward(x))
    same_bits(y, _one_at_a_time(x))
    for r in (0, 1, 2, 3, 4, 6, 7):
        assert np.isnan(y[r]).all(), r
    assert not np.isnan(y[8:]).any() and not np.isnan(y[5]).any()
    assert y[5, last] == 0 and y[12, shared] == 0
    assert y[9, shared] == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(y[10], 1.0 / c, rtol=1e-6)
    assert y[11, last] == 1.0 and (y[11, :last] == 0).all()
    np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)  # NaN where the oracle is NaN


@pytest.mark.parametrize("c", [10, 16, 29, 32, 45, 96, 128])
def test_spreads_down_to_underflow(c):
    rng = _rng("spread", c)
    x = -rng.uniform(0, 200, (72, c)).astype(np.float32)
    x[:, c - 1] = 0.0  # the max in the last register
    x[::4, 0] = 0.25
    x[1::4, c - 8] = 0.5  # in the repeated lanes
    y = with_threads(1, lambda: _C.softmax_forward(x))
    np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)
    assert (y >= 0).all() and np.isfinite(y).all()
    assert (y[x < -110] == 0).all()
    same_bits(y, _one_at_a_time(x))
