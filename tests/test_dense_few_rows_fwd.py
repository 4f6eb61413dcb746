"""The dense forward with few rows at avx2 (csrc/cpu/dense_few_rows_fwd.cpp, stop 38): 2..8 rows
with k * m >= 128 * 128 in register blocks of 4 rows x 24 columns (then 8 columns, then the
last m % 8 one by one), each output summed from the bias over k in order (as gemv_rows at n = 1; its last m % 8
columns may round differently there); the columns split
across the threads in units of 8. Other levels (and n = 1, n > 8, small w) keep their paths:
these tests hold at every level.

Against the float64 oracle: rtol 1e-5, atol 1e-5 x the sum over k of |x * w| (float sums of
up to 1100 terms); the sweep's N=1 7x7 C=512 shape and its neighbours; column counts with
tails of 1..23 after the blocks of 24; no bias; one and two threads; NaN and inf in x reaching
exactly their row, in w exactly its column."""
import numpy as np
import pytest

from fastconv import _C

SHAPES = [(7, 512, 512), (2, 128, 128), (3, 200, 97), (4, 64, 520), (5, 300, 131), (6, 1100, 17),
          (8, 129, 255), (9, 128, 128), (1, 512, 512), (7, 100, 100), (8, 256, 8), (3, 256, 71)]


def _check(x, w, b):
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    ref = x64 @ w64 + (0.0 if b is None else b.astype(np.float64))
    scale = np.abs(x64) @ np.abs(w64) + (0.0 if b is None else np.abs(b.astype(np.float64)))
    y = _C.dense_forward(x, w, b)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.all(np.abs(y - ref) <= 1e-5 * np.abs(ref) + 1e-5 * scale)
    return y


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,k,m", SHAPES)
def test_matches_oracle(n, k, m, threads):
    old = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        rng = np.random.default_rng(n * 1000 + k + m)
        x = rng.standard_normal((n, k)).astype(np.float32)
        w = rng.standard_normal((k, m)).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32)
        _check(x, w, b)
        _check(x, w, None)
    finally:
        _C.set_num_threads(old)


@pytest.mark.parametrize("n,k,m", [(7, 512, 512), (3, 200, 97), (5, 300, 131)])
def test_nan_inf_reach_their_row_and_column(n, k, m):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    x[1, k // 2] = np.nan
    x[n - 1, 0] = np.inf
    y = _C.dense_forward(x, w, b)
    bad = ~np.isfinite(y)
    assert bad[1].all() and bad[n - 1].all() and bad.sum() == 2 * m
    x = np.nan_to_num(x, posinf=0.0)
    for col in (0, 23, 24, m - 1):
        w2 = w.copy()
        w2[k - 1, col] = np.nan
        bad = ~np.isfinite(_C.dense_forward(x, w2, b))
        assert bad[:, col].all() and bad.sum() == n
