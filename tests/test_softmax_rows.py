"""Softmax forward with each row in registers (csrc/cpu/softmax_rows.cpp, the avx2 level's
9..128 classes, and its three-pass wide rows from 129; at avx512 and baseline the same cases
run softmax.cpp's own paths, against the same oracle).

Every width 9..129 (each register count 2..16 with every tail of 1..8 lanes in the masked last
register), wide rows with and without a tail, over one and several 1024-float sum blocks (up
to 2085), row counts 1, 2, 7 and a few thousand; the sweep's shapes
scaled down through F.softmax on NHWC arrays (batch 1, odd sizes); 1 thread against 3 (rows
are independent: the same bits); NaN, +inf and -inf in the masked last register and in whole
registers, a row of -inf, large magnitudes, and spreads down to exp's underflow.

Tolerances: rtol 2e-6 / atol 1e-7 against the float64 oracle (test_softmax_dense_planes.py's:
exp_lanes is a few ulp, the row's sum a float sum of <= 128 terms), and each row's sum 1 to
rtol 2e-6 (scaled by the largest class: ~1e-6 relative).
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import functional as F

import seeds
from softmax_oracle import oracle, threads_same_bits

WIDTHS = list(range(9, 130)) + [136, 200, 256, 263, 512, 1000, 1024, 1031, 2048, 2085]
RTOL, ATOL = 2e-6, 1e-7


def _rng(*parts):
    return np.random.default_rng(seeds.seed_of("softmax_rows", *parts))


@pytest.mark.parametrize("c", WIDTHS)
def test_every_width_matches_oracle(c):
    rng = _rng("width", c)
    for rows in (1, 2, 7, 301):
        x = (3 * rng.standard_normal((rows, c)) + rng.uniform(-20, 20, (rows, 1))).astype(np.float32)
        y = _C.softmax_forward(x)
        np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=2e-6)


@pytest.mark.parametrize("shape", [(1, 7, 7, 32), (2, 5, 3, 9), (1, 28, 28, 32), (3, 14, 14, 32),
                                   (1, 11, 13, 24), (2, 9, 9, 48), (1, 5, 7, 63), (1, 6, 6, 64),
                                   (1, 3, 5, 96), (2, 3, 3, 127), (1, 4, 4, 128), (1, 1, 1, 17),
                                   (1, 3, 3, 256), (2, 2, 3, 512), (1, 1, 1, 1000)])
def test_sweep_shapes_scaled_down(shape):
    """The sweep's per-pixel softmax (rows N*H*W) through the functional call."""
    x = (4 * _rng("shape", shape).standard_normal(shape)).astype(np.float32)
    y = F.softmax(x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("c", [9, 16, 17, 24, 31, 32, 33, 40, 57, 64, 65, 100, 128, 129, 1030])
def test_threads_give_the_same_bits(c):
    rows = 40_000 // c + 13  # over the threading grain; shares end mid-way
    x = (4 * _rng("threads", c).standard_normal((rows, c))).astype(np.float32)
    threads_same_bits(x, RTOL, ATOL)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the oracle's inf - inf
@pytest.mark.parametrize("c", [9, 15, 16, 23, 24, 32, 39, 47, 64, 71, 127, 128, 129, 256, 1027])
def test_nan_and_inf_in_whole_and_masked_registers(c):
    rng = _rng("special", c)
    x = rng.standard_normal((12, c)).astype(np.float32)
    last = c - 1  # in the masked last register unless c is a multiple of 8
    x[0, last] = np.nan
    x[1, 0] = np.nan  # first register
    x[2, last] = np.inf  # inf - inf: the row NaN
    x[3, last] = -np.inf  # that class 0, the rest finite
    x[4, :] = -np.inf  # max -inf: -inf - -inf is NaN
    x[5, :] = np.nan
    x[6, c // 2] = np.inf
    x[6, last] = np.nan
    x[7, last] = 80.0  # one class far above the others (theirs ~1e-35)
    x[8, :] = 1e30  # equal huge logits: exactly uniform
    x[9, :last] = -1e30
    y = _C.softmax_forward(x)
    want = oracle(x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    for r in (0, 1, 2, 4, 5, 6):
        assert np.isnan(y[r]).all(), r
    assert y[3, last] == 0 and np.isfinite(y[3]).all()
    assert y[7, last] == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(y[8], 1.0 / c, rtol=1e-6)
    assert y[9, last] == 1.0 and (y[9, :last] == 0).all()
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)  # NaN where the oracle is NaN


@pytest.mark.parametrize("c", [12, 32, 45, 96, 300, 1029])
def test_wide_spreads_down_to_underflow(c):
    rng = _rng("spread", c)
    x = -rng.uniform(0, 200, (33, c)).astype(np.float32)
    x[:, c - 1] = 0.0  # the max in the masked register
    x[::4, 0] = 0.25
    y = _C.softmax_forward(x)
    np.testing.assert_allclose(y, oracle(x), rtol=RTOL, atol=ATOL)
    assert (y >= 0).all() and np.isfinite(y).all()
    assert (y[x < -110] == 0).all()


def test_rows_stay_within_their_own_floats():
    """Each row is written only at its own c floats: a row view's neighbours keep their values."""
    c = 21
    x = (3 * _rng("view").standard_normal((50, c))).astype(np.float32)
    y = _C.softmax_forward(x[10:11])  # one row: the masked store's 3 lanes past the register
    np.testing.assert_allclose(y, oracle(x[10:11]), rtol=RTOL, atol=ATOL)
    big = _C.softmax_forward(x)
    np.testing.assert_array_equal(big[10:11], y)
