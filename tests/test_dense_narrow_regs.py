"""Dense layers with k = m = 3..8 (the backward 4..8; a per-pixel classifier; the sweep's (N*H, C) x (C, C)
products) on the avx2 register rows (csrc/cpu/dense_regs_avx2.h, stop 38): a row in one ymm,
8 rows in flight and the last n % 8 one at a time, each row's 8 lanes stored onto the next
one and the last row of a thread's share exactly; the backward's dw / db sums in float over
64 rows, folded into double, and the tensor's last row of dy read through a copy. At the other
levels the same shapes run the planes / AVX-512 register paths: these tests hold at every level.

Against the float64 oracle (rtol 1e-5 relative to the largest magnitude for y and dx; dw and
db, sums over n rows, 1e-5 of the sum of |terms|): widths 3..9 (the neighbours that
stay on their paths: 9 on the GEMM, 3 in the backward on the planes), row counts leaving 0..7 rows after the groups of 8 and after each
thread's share, one thread and two; no bias; NaN and inf in x and dy reaching exactly the
oracle's rows and columns. The forward at k = m = 9..16 (two ymm a row, w's rows from an L1
copy, 4 rows at a time, then one at a time; 17 the neighbour on the GEMM) likewise."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

WIDTHS = [3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17]
ROWS = [8, 9, 15, 16, 17, 23, 63, 129, 1001, 5555]


def _close(got, ref, scale):
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


def _check(x, w, b, dy):
    x64, w64, dy64 = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    ref = x64 @ w64 + (0.0 if b is None else b.astype(np.float64))
    _close(_C.dense_forward(x, w, b), ref, max(1.0, float(np.abs(ref).max())))
    dx, dw, db = _C.dense_backward(dy, x, w)
    rdx = dy64 @ w64.T
    _close(dx, rdx, max(1.0, float(np.abs(rdx).max())))
    _close(dw, x64.T @ dy64, float((np.abs(x64).T @ np.abs(dy64)).max()))
    _close(db, dy64.sum(0), float(np.abs(dy64).sum(0).max()))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c", WIDTHS)
def test_matches_oracle(c, threads):
    old = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        for k, n in enumerate(ROWS):
            rng = np.random.default_rng(100 * c + k)
            x = rng.standard_normal((n, c)).astype(np.float32)
            w = rng.standard_normal((c, c)).astype(np.float32)
            b = rng.standard_normal(c).astype(np.float32) if k % 3 else None
            dy = rng.standard_normal((n, c)).astype(np.float32)
            _check(x, w, b, dy)
    finally:
        _C.set_num_threads(old)


@pytest.mark.parametrize("c", [3, 6])
def test_sweep_shapes_scaled_down(c):
    # the sweep's dense cases (N=256 x 28..112 rows of C=6, N=256 56 of C=3) at N=5
    for hw in (28, 56, 112):
        rng = np.random.default_rng(hw + c)
        n = 5 * hw
        x = rng.standard_normal((n, c)).astype(np.float32)
        w = rng.standard_normal((c, c)).astype(np.float32)
        _check(x, w, rng.standard_normal(c).astype(np.float32), rng.standard_normal((n, c)).astype(np.float32))


@pytest.mark.parametrize("c", [3, 4, 5, 6, 7, 8, 9, 16])
def test_nan_inf_reach_their_rows_and_columns(c):
    n = 37  # rows 0..31 in groups of 8, 32..36 one at a time; 36 the last (read through a copy)
    rng = np.random.default_rng(7 * c)
    x = rng.standard_normal((n, c)).astype(np.float32)
    w = rng.standard_normal((c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    dy = rng.standard_normal((n, c)).astype(np.float32)
    for r in (0, 7, 8, 33, 36):
        x[r, r % c] = np.nan
    y = _C.dense_forward(x, w, b)
    bad = ~np.isfinite(y)
    assert bad[[0, 7, 8, 33, 36]].all() and bad.sum() == 5 * c
    dy[36, c - 1] = np.inf
    dy[5, 0] = np.nan
    dx, dw, db = _C.dense_backward(dy, np.nan_to_num(x), w)
    bad = ~np.isfinite(dx)
    assert bad[[5, 36]].all() and bad.sum() == 2 * c
    assert (~np.isfinite(dw[:, 0])).all() and (~np.isfinite(dw[:, c - 1])).all()
    assert np.isfinite(dw[:, 1:c - 1]).all()
    assert np.isnan(db[0]) and np.isinf(db[c - 1]) and np.isfinite(db[1:c - 1]).all()
