"""Dense backward with 1..8 rows (csrc/cpu/dense_few_rows.cpp; AVX2 and AVX-512 levels, k * m >=
128 * 128, m <= 4096) and 9..16 rows (AVX-512, k * m >= 512 * 512); other shapes and the baseline
level take the GEMMs: dx = dy @ w^T from w's
rows against dy^T (eight rows of w in flight, the sums over m in blocks of 256), dw = x^T @ dy
row by row, db the column sums. Against the NumPy oracle in float64 (rtol 1e-5, atol 1e-5 times
the output's magnitude: float32 sums of up to 4096 products), bitwise the same on one and two
threads, NaN and inf where the oracle has them."""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

# (k, m): the sweep's 512; k not a multiple of the 8 rows in flight (tails of 1..7 rows); m not a
# multiple of 16 or of the 4-register blocks; m above the 256-term block (sums added); the
# largest m of the path and one past it (the GEMMs); k * m just below the gate (the GEMMs).
SHAPES = [(512, 512), (131, 129), (1003, 300), (300, 57), (1000, 4096), (64, 4097), (127, 128),
          (128, 128)]


def _f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


def _arrays(n, k, m, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(m)).astype(np.float32)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    return dy, x, w


@pytest.mark.parametrize("k,m", SHAPES)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 12, 16, 17])
def test_few_rows_backward_matches_oracle(two_threads, n, k, m):
    dy, x, w = _arrays(n, k, m, n * 1000 + k + m)
    got = _C.dense_backward(dy, x, w)
    ref = R.dense_backward(*_f64(dy, x, w))
    for g, r in zip(got, ref):
        assert g.shape == r.shape and g.dtype == np.float32
        _close(g, r)
    wide = _C.isa_level() not in ("baseline", "avx2")  # 9..16 rows at AVX-512, from 512 x 512
    if n > (16 if wide else 8) or m > 4096 or k * m < (128 * 128 if n <= 8 else 512 * 512) or _C.isa_level() == "baseline":
        return  # the GEMMs: their results may depend on the thread count
    fastconv.set_num_threads(1)
    try:
        one = _C.dense_backward(dy, x, w)
    finally:
        fastconv.set_num_threads(2)
    for g, o in zip(got, one):
        np.testing.assert_array_equal(g, o)


def test_few_rows_backward_functional_shapes():
    """The sweep's call (F.dense_backward, rows = 1 x 7 image rows, 512 features)."""
    import fastconv.functional as F
    dy, x, w = _arrays(7, 512, 512, 5)
    got = F.dense_backward(dy, x, w)
    for g, r in zip(got, R.dense_backward(*_f64(dy, x, w))):
        _close(g, r)


@pytest.mark.parametrize("n,k", [(1, 203), (7, 203), (13, 1003)])
def test_few_rows_backward_propagates_nan_and_inf(two_threads, n, k):
    m = 300
    dy, x, w = _arrays(n, k, m, 11)
    dy[n - 1, 77] = np.nan      # dx's last row, dw's column 77 and db[77] NaN
    w[150, 3] = np.inf          # dx[:, 150] inf (or NaN where dy's row holds the NaN)
    x[0, 9] = -np.inf           # dw's row 9 +-inf (NaN at column 77)
    got = _C.dense_backward(dy, x, w)
    ref = R.dense_backward(*_f64(dy, x, w))
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_array_equal(np.isposinf(g), np.isposinf(r))
        np.testing.assert_array_equal(np.isneginf(g), np.isneginf(r))
        finite = np.isfinite(r)
        _close(g[finite], r[finite])
    dx, dw, db = got
    assert np.isnan(dx[n - 1]).all() and np.isnan(dw[:, 77]).all() and np.isnan(db[77])
    assert np.isinf(dw[9, :77]).all() and np.isfinite(np.delete(dw[10], 77)).all()
