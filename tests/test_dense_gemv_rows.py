"""Dense forward of one row with w up to 2^18 floats (csrc/cpu/dense.cpp gemv_rows): column
blocks of up to 8 registers of the level, each column summed over k in order from its bias;
at avx2 (and avx512) the last register of the last block masked, at the baseline the last
m % 4 columns scalar. Against the NumPy oracle in float64 (rtol 1e-5, atol 1e-5 times the
row's magnitude: float32 sums of up to ~2000 products); a column's result bit for bit the same
wherever it falls in the blocks (w's columns shifted); NaN and inf only in their own columns."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

# m: below one register, one register, every block size 1..8 registers with and without a
# masked tail, more than one block (64 columns at avx2); LeNet-5's classifier layers
# (400x120, 120x84, 84x10); k up to 2048 with k * m <= 2^18 (one thread, no row split)
SHAPES = [(1, 1), (5, 3), (7, 8), (16, 9), (33, 15), (25, 17), (400, 120), (120, 84), (84, 10),
          (64, 63), (64, 64), (65, 65), (3, 100), (129, 127), (17, 129), (512, 512), (2048, 128),
          (1000, 200), (576, 10), (300, 57)]


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


def _f64(v):
    return None if v is None else v.astype(np.float64)


@pytest.mark.parametrize("k,m", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_one_row(k, m, bias):
    rng = np.random.default_rng(7 * k + m)
    x = rng.standard_normal((1, k)).astype(np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    got = _C.dense_forward(x, w, b)
    assert got.shape == (1, m) and got.dtype == np.float32
    _close(got, R.dense_forward(_f64(x), _f64(w), _f64(b)))


@pytest.mark.parametrize("k,m", [(400, 120), (120, 84), (84, 10), (30, 71), (9, 200)])
@pytest.mark.parametrize("shift", [1, 3, 7, 8, 13])
def test_a_column_does_not_depend_on_its_block(k, m, shift):
    """Columns shift..m of w as a narrower w: each lands in another block and register lane
    (or the masked tail, or a scalar column), and must come out bit for bit the same."""
    rng = np.random.default_rng(k * m + shift)
    x = rng.standard_normal((1, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    full = _C.dense_forward(x, w, b)
    part = _C.dense_forward(x, np.ascontiguousarray(w[:, shift:]), np.ascontiguousarray(b[shift:]))
    np.testing.assert_array_equal(part, full[:, shift:])


@pytest.mark.parametrize("k,m", [(400, 120), (120, 84), (84, 10), (64, 65)])
def test_nan_and_inf_stay_in_their_columns(k, m):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    x[0, k // 2] = np.nan  # every output NaN
    assert np.isnan(_C.dense_forward(x, w, None)).all()
    x[0, k // 2] = 1.0
    last = m - 1  # the last column: the masked lane (or a scalar one at the baseline)
    w[k - 1, last] = np.nan
    w[0, 0] = np.inf
    b = rng.standard_normal(m).astype(np.float32)
    b[m // 2] = -np.inf
    got = _C.dense_forward(x, w, b)
    assert np.isnan(got[0, last])
    assert np.isinf(got[0, 0]) and np.sign(got[0, 0]) == np.sign(x[0, 0])
    assert got[0, m // 2] == -np.inf
    rest = np.delete(got[0], [0, m // 2, last])
    assert np.isfinite(rest).all()
    want = R.dense_forward(_f64(x), _f64(np.where(np.isfinite(w), w, 0)), _f64(np.where(np.isfinite(b), b, 0)))
    _close(np.delete(got[0], [0, m // 2, last]), np.delete(want[0], [0, m // 2, last]))
