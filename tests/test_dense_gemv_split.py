"""Dense forward of one row against a large w (csrc/cpu/dense.cpp gemv_row_split): blocks of
256 rows of w summed into partial rows (16 rows of w side by side, the rest of a block by 4,
then one at a time), on the item team when there are two threads, added in block order. Against the NumPy oracle in float64 (rtol 1e-5, atol 1e-5 times the row's
magnitude: float32 sums of up to ~4000 products), bitwise the same on one and two threads,
NaN and inf where the oracle has them."""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

# (k, m): w above 1 MiB; k not a multiple of the 256-row block, m not of the vector width;
# 279 = 256 + 16 + 4 + 3 and 1500 = 5 * 256 + 13 * 16 + 3 * 4: every kind of pass in a block
SHAPES = [(2048, 1000), (1500, 1003), (257, 1100), (4096, 300), (279, 1003)]


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("k,m", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_one_row_large_weights(two_threads, k, m, bias):
    rng = np.random.default_rng(k + m)
    x = rng.standard_normal((1, k)).astype(np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    got = _C.dense_forward(x, w, b)
    f64 = lambda v: None if v is None else v.astype(np.float64)  # noqa: E731
    _close(got, R.dense_forward(f64(x), f64(w), f64(b)))
    fastconv.set_num_threads(1)
    try:
        one = _C.dense_forward(x, w, b)
    finally:
        fastconv.set_num_threads(2)
    np.testing.assert_array_equal(got, one)


def test_one_row_propagates_nan_and_inf(two_threads):
    rng = np.random.default_rng(3)
    k, m = 1500, 1003
    x = rng.standard_normal((1, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    x[0, 700] = np.nan           # every output NaN
    got = _C.dense_forward(x, w, None)
    assert np.isnan(got).all()
    x[0, 700] = 1.0
    w[1499, 5] = np.inf          # column 5: +inf or -inf times x[1499]; the others finite
    got = _C.dense_forward(x, w, None)
    want = R.dense_forward(x.astype(np.float64), w.astype(np.float64), None)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert np.isinf(got[0, 5]) and np.isfinite(np.delete(got, 5)).all()


def test_one_row_inf_in_a_last_short_group_of_rows(two_threads):
    """k = 257: the last block has one row of w (not a whole group of 4); an inf there
    reaches only its own column."""
    rng = np.random.default_rng(4)
    k, m = 257, 1100
    x = rng.standard_normal((1, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    w[256, 7] = np.inf
    got = _C.dense_forward(x, w, None)
    assert np.isinf(got[0, 7]) and np.isfinite(np.delete(got, 7)).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_one_row_nan_inf_in_every_kind_of_pass(two_threads, threads):
    """k = 279: the last block has rows 256..271 (one pass of 16), 272..275 (a pass of 4) and
    276..278 (one at a time). An inf of w in each reaches only its own column, a NaN of w
    only its own; a NaN of x in the pass of 16 reaches every column."""
    rng = np.random.default_rng(5)
    k, m = 279, 1003
    x = rng.standard_normal((1, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    bad = {3: (256, np.inf), 500: (271, -np.inf), 17: (273, np.inf), 1002: (278, np.inf),
           40: (260, np.nan), 999: (275, np.nan), 64: (277, np.nan)}
    for col, (row, v) in bad.items():
        w[row, col] = v
    fastconv.set_num_threads(threads)
    try:
        got = _C.dense_forward(x, w, None)
        want = R.dense_forward(x.astype(np.float64), w.astype(np.float64), None)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        assert sorted(np.flatnonzero(~np.isfinite(got[0]))) == sorted(bad)
        ok = np.isfinite(want)
        _close(got[ok], want[ok])
        x[0, 263] = np.nan
        assert np.isnan(_C.dense_forward(x, w, None)).all()
    finally:
        fastconv.set_num_threads(2)
