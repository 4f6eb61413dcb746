"""The 2026-12-07 paths of softmax.cpp, fast_exp.h and dense.cpp against the NumPy oracle.

- softmax forward at 1..8 classes on pixel_transpose planes (a register of rows split into C
  planar registers; the rows past the last whole register take the tile path), at 9..40 on 16
  rows transposed in registers per block of 16 classes (AVX-512, pixel_transpose.h
  transpose16; the rows past the last 16 take the tile or the masked rows), at 41..128 classes
  in masked rows (AVX-512; the tile or the row loop at the other levels), the row loop from
  129; row counts below, at and past a register of rows; one and two threads.
- exp_lanes: NaN-propagating clamps (no final select), n from the shifter's bits, vscalefps on
  AVX-512 (subnormal results, -104 lower clamp): rows with NaN, +inf, -inf, all -inf, and
  spreads of x - max down to -200 must match the oracle; sigmoid near exp's overflow (the old
  upper clamp at 88.5 returned exp(88.5) for x in (88.5, 88.72]: sigmoid(-88.6) 10% off).
- softmax backward at 1..8 classes: d = sum(dy * y) per row from the split products, spread
  back over the row's lanes by one permute per register (rows and tails, one and two threads).
- dense backward with k = m <= 8: dx, dw and db in one pass on planes (float lane sums folded
  into double every 1024 rows), the last rows of each thread's share one by one.
- dense forward and backward with k = m = 5..16 (AVX-512; the planes to 8 and the GEMMs above
  elsewhere): a row one register (256-bit to 8), w's rows or columns in registers, dw's K
  accumulators (2 or 4 sets below 9) folded into double every 64 rows; rows past the last
  group of 8, past each thread's whole registers and past the sets one by one.

Tolerances: softmax at rtol 2e-6 / atol 1e-7 as test_narrow_rows.py (a few-ulp exp, float
sums of < 129 terms); dense at rtol 1e-5 with atol 1e-5 * sqrt(terms) (float products of <= 8
terms for dx, float sums of 64 terms folded into double for dw and db).
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

import seeds

PLANES = [1, 2, 3, 4, 5, 6, 7, 8]
TRANSPOSED = [9, 12, 15, 16]  # softmax forward (with 17..40 below); dense k = m in registers
MASKED = [17, 20, 24, 32, 33, 40, 41, 48, 72, 96, 127, 128, 129]
ROWS = [1, 15, 16, 17, 33, 1003]


def _rng(*parts):
    return np.random.default_rng(seeds.seed_of("softmax_dense_planes", *parts))


def _threads(n):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(n)
    return before


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c", PLANES + TRANSPOSED + MASKED)
@pytest.mark.parametrize("rows", ROWS)
def test_softmax_forward_matches_oracle(rows, c, threads):
    rng = _rng("fwd", rows, c)
    if threads == 2:
        rows = rows * 50 + 7  # over the threading grain (32768 elements) at most widths
    x = (4 * rng.standard_normal((rows, c))).astype(np.float32)
    dy = rng.standard_normal((rows, c)).astype(np.float32)
    before = _threads(threads)
    try:
        y = _C.softmax_forward(x)
        dx = _C.softmax_backward(dy, y)  # 1..8: d per row from the split products, expanded
    finally:
        fastconv.set_num_threads(before)
    np.testing.assert_allclose(y, R.softmax_forward(x.astype(np.float64)), rtol=2e-6, atol=1e-7)
    # atol 2e-6: d is a float sum of up to 129 products (test_narrow_rows: 1e-6 up to 65)
    np.testing.assert_allclose(dx, R.softmax_backward(dy.astype(np.float64), y.astype(np.float64)),
                               rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=2e-6)
    if threads == 2:
        np.testing.assert_array_equal(_C.softmax_forward(x), y)  # rows independent: same bits


@pytest.mark.parametrize("c", PLANES + TRANSPOSED + MASKED)
def test_softmax_forward_nan_and_inf_rows_as_oracle(c):
    rng = _rng("special", c)
    rows = 53  # three registers of rows and a tail, at every register width
    x = rng.standard_normal((rows, c)).astype(np.float32)
    x[3, c // 2] = np.nan  # the row NaN
    x[18, c - 1] = np.inf  # inf - inf: the row NaN
    x[20, 0] = -np.inf  # that class 0, the rest finite
    x[35, :] = -np.inf  # max -inf: -inf - -inf is NaN
    x[50, c // 3] = np.nan
    x[50, c - 1] = -np.inf
    y = _C.softmax_forward(x)
    want = R.softmax_forward(x.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    for r in (3, 18, 35, 50):
        assert np.isnan(y[r]).all(), r
    assert y[20, 0] == 0 or c == 1
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-7)  # NaN where the oracle is NaN


@pytest.mark.parametrize("c", [2, 6, 12, 16, 24, 33, 40, 96])
def test_softmax_forward_wide_spreads_match_oracle(c):
    """x - max from 0 down to -200: exp's lower clamps (-87.5 / -104) and subnormal results."""
    rng = _rng("spread", c)
    rows = 40
    x = -rng.uniform(0, 200, (rows, c)).astype(np.float32)
    x[:, 0] = 0.0
    x[::3, c - 1] = 0.5
    y = _C.softmax_forward(x)
    np.testing.assert_allclose(y, R.softmax_forward(x.astype(np.float64)), rtol=2e-6, atol=1e-7)
    assert (y >= 0).all() and np.isfinite(y).all()
    assert (y[x < -110] == 0).all()  # exp underflows to 0 below ~-104, as the oracle's float


def test_sigmoid_near_exp_overflow_matches_oracle():
    z = np.array([[-88.4, -88.6, -88.7, -88.75, -89.0, -100.0, 88.6, 0.0, -np.inf, np.inf, np.nan] * 3],
                 np.float32).reshape(-1, 11)
    y = _C.bias_act_forward(z, None, "sigmoid")
    want = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    assert np.isnan(y[:, -1]).all()
    finite = np.abs(z[0]) < 88.72  # exp(-z) finite in float: to rtol 1e-5, subnormal results too
    np.testing.assert_allclose(y[:, finite], want[:, finite], rtol=1e-5, atol=0)
    # exp(-z) overflows to inf: 1 / inf = 0, within a subnormal of the true value
    np.testing.assert_allclose(y[:, ~finite][:, :-1], want[:, ~finite][:, :-1], rtol=0, atol=3e-39)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c", PLANES + TRANSPOSED)
@pytest.mark.parametrize("n", [16, 17, 33, 1003, 40_005])
def test_dense_backward_planes_match_oracle(n, c, threads):
    rng = _rng("dense", n, c, threads)
    x, dy = rng.standard_normal((n, c)).astype(np.float32), rng.standard_normal((n, c)).astype(np.float32)
    w = rng.standard_normal((c, c)).astype(np.float32)
    before = _threads(threads)
    try:
        dx, dw, db = _C.dense_backward(dy, x, w)
    finally:
        fastconv.set_num_threads(before)
    rdx, rdw, rdb = R.dense_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64))
    np.testing.assert_allclose(dx, rdx, rtol=1e-5, atol=1e-5 * np.sqrt(c))
    np.testing.assert_allclose(dw, rdw, rtol=1e-5, atol=1e-5 * np.sqrt(n))
    np.testing.assert_allclose(db, rdb, rtol=1e-5, atol=1e-5 * np.sqrt(n))


@pytest.mark.parametrize("c", [3, 6, 12, 16])
@pytest.mark.parametrize("row", [5, 1000])  # in a whole register of rows, and in the tail
def test_dense_backward_planes_propagate_nan(c, row):
    rng = _rng("dense-nan", c, row)
    n = 1003
    x, dy = rng.standard_normal((n, c)).astype(np.float32), rng.standard_normal((n, c)).astype(np.float32)
    w = rng.standard_normal((c, c)).astype(np.float32)
    dy[row, 1] = np.nan  # dx's row, dw's column 1 and db[1]
    x[row + 1, 0] = np.inf  # dw's row 0: inf * finite dy
    dx, dw, db = _C.dense_backward(dy, x, w)
    assert np.isnan(dx[row]).all() and np.isfinite(np.delete(dx, row, axis=0)).all()
    assert np.isnan(dw[:, 1]).all() and np.isnan(db[1])
    assert np.isinf(dw[0, [j for j in range(c) if j != 1]]).all()
    others = [j for j in range(c) if j != 1]
    assert np.isfinite(db[others]).all() and np.isfinite(dw[1:, others]).all()


def test_dense_backward_unequal_narrow_widths_still_match():
    """k != m stays on the GEMMs."""
    rng = _rng("dense-km")
    n, k, m = 1003, 3, 6
    x, dy = rng.standard_normal((n, k)).astype(np.float32), rng.standard_normal((n, m)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    got = _C.dense_backward(dy, x, w)
    for g, r in zip(got, R.dense_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64))):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("c", PLANES + TRANSPOSED)
@pytest.mark.parametrize("n", [16, 17, 1003, 40_005])
def test_dense_forward_planes_match_oracle_and_propagate_nan(n, c, bias, threads):
    """y = b + x @ w at k = m <= 8 on planes; a NaN in x makes its row of y NaN, and only it."""
    rng = _rng("dense-fwd", n, c, bias, threads)
    x = rng.standard_normal((n, c)).astype(np.float32)
    w = rng.standard_normal((c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    x[n - 1, c - 1] = np.nan  # in the tail rows (n % 16 != 0) or the last register of rows
    x[3, 0] = np.nan
    before = _threads(threads)
    try:
        y = _C.dense_forward(x, w, b)
    finally:
        fastconv.set_num_threads(before)
    want = R.dense_forward(x.astype(np.float64), w.astype(np.float64), b)
    bad = [3, n - 1]
    assert np.isnan(y[bad]).all()
    ok = np.delete(np.arange(n), bad)
    assert np.isfinite(y[ok]).all()
    np.testing.assert_allclose(y[ok], want[ok], rtol=1e-5, atol=1e-5 * np.sqrt(c))


# Softmax backward at c = 16 K + 8 (24, 40; AVX-512): rows in pairs of 2 K + 1 whole
# registers, the middle one shared by the pair, both dots reduced at once; an odd last row in
# the masked rows (56: the masked rows only, as a neighbour). Each row's dx must depend on its own row only: NaN / inf placed in the
# shared register (row 0's last class, row 1's first) and at the far ends must stay in their
# row, and an inf in dy gives that row's oracle values (inf * y, NaN where y - d cancels).
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("c", [24, 40, 56])
@pytest.mark.parametrize("rows", [1, 2, 3, 16, 1003, 20_004])
def test_softmax_backward_row_pairs_match_oracle(rows, c, threads):
    rng = _rng("bwd-pairs", rows, c)
    x = (4 * rng.standard_normal((rows, c))).astype(np.float32)
    dy = rng.standard_normal((rows, c)).astype(np.float32)
    y = _C.softmax_forward(x)
    before = _threads(threads)
    try:
        dx = _C.softmax_backward(dy, y)
        again = _C.softmax_backward(dy, y)
    finally:
        fastconv.set_num_threads(before)
    want = R.softmax_backward(dy.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(dx, want, rtol=2e-6, atol=2e-6)
    np.testing.assert_array_equal(dx, again)


@pytest.mark.parametrize("c", [24, 40, 56])
def test_softmax_backward_row_pairs_nan_and_inf_stay_in_their_row(c):
    rows = 11  # pairs (0, 1) ... (8, 9), row 10 alone
    rng = _rng("bwd-pairs-nan", c)
    y = _C.softmax_forward((2 * rng.standard_normal((rows, c))).astype(np.float32))
    dy = rng.standard_normal((rows, c)).astype(np.float32)
    dy[0, c - 1] = np.nan  # row 0's last class: the shared register's low half
    dy[3, 0] = np.nan  # row 3's first class: the shared register's high half
    y[4, c - 1] = np.nan  # y itself
    dy[7, c // 2] = np.inf
    dy[10, 0] = np.nan  # the odd last row
    dx = _C.softmax_backward(dy, y)
    want = R.softmax_backward(dy.astype(np.float64), y.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(dx), np.isinf(want))
    for r in (0, 3, 4, 10):
        assert np.isnan(dx[r]).all()
    finite = np.isfinite(want).all(axis=1)
    assert finite[[1, 2, 5, 6, 8, 9]].all()
    np.testing.assert_allclose(dx[finite], want[finite], rtol=2e-6, atol=2e-6)
