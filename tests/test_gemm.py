"""fastconv's own AVX-512 SGEMM (csrc/cpu/gemm.cpp) against NumPy float64, through the
_C._sgemm test hook (cblas-style row-major call on flat float32 buffers, C updated in place).

Tolerance: |C - ref| <= 1e-5 * sqrt(k + 1) * max|ref| + 1e-6, elementwise over the whole
matrix. float32 accumulation of k products grows its error about like sqrt(k) times the
unit round-off (6e-8) times the magnitude of the terms; 1e-5 leaves a wide margin while still
catching any wrong element (those are off by O(max|ref|)).
"""
import math

import numpy as np
import pytest

import fastconv
from fastconv import _C

BACKENDS = ["openblas"] + (["native"] if _C.has_native_gemm else [])


def _stored(trans, rows, cols):
    """Shape (rows, cols) of the stored matrix for op(X) of shape (rows, cols)."""
    return (cols, rows) if trans else (rows, cols)


def _matrix(rng, shape, ld):
    """A random matrix with leading dimension ld >= shape[1], as a flat buffer + its view."""
    r, c = shape
    buf = rng.uniform(-1, 1, size=max(r * ld, 1)).astype(np.float32)
    return buf, buf[: r * ld].reshape(r, ld)[:, :c] if r else np.zeros((0, c), np.float32)


def _run(backend, ta, tb, m, n, k, alpha, beta, pads=(0, 0, 0), c_fill=None, seed=0):
    rng = np.random.default_rng(seed)
    sa, sb = _stored(ta, m, k), _stored(tb, k, n)
    lda, ldb, ldc = sa[1] + pads[0], sb[1] + pads[1], n + pads[2]
    lda, ldb, ldc = max(lda, 1), max(ldb, 1), max(ldc, 1)
    abuf, a = _matrix(rng, sa, lda)
    bbuf, b = _matrix(rng, sb, ldb)
    cbuf, c = _matrix(rng, (m, n), ldc)
    c_old = cbuf.copy()
    if c_fill is not None:
        c[...] = c_fill
    opa = (a.T if ta else a).astype(np.float64)
    opb = (b.T if tb else b).astype(np.float64)
    ref = alpha * (opa @ opb) + (0.0 if beta == 0 else beta * c.astype(np.float64))
    _C._sgemm(ta, tb, m, n, k, alpha, abuf, lda, bbuf, ldb, beta, cbuf, ldc, backend)
    got = cbuf[: m * ldc].reshape(m, ldc) if m else np.zeros((0, ldc), np.float32)
    tol = 1e-5 * math.sqrt(k + 1) * (np.abs(ref).max() if ref.size else 0) + 1e-6
    np.testing.assert_allclose(got[:, :n], ref, rtol=0, atol=tol)
    # Nothing outside the m x n window moves (the ldc padding, the tail of the buffer).
    mask = np.ones(cbuf.shape, bool)
    if m:
        mask[: m * ldc].reshape(m, ldc)[:, :n] = False
    np.testing.assert_array_equal(cbuf[mask], c_old[mask])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_transposes_edges_and_leading_dims(backend, ta, tb):
    # m, n, k straddle the micro-tile (14 x 32), the 16-lane vector and the k blocking.
    shapes = [(1, 1, 1), (14, 32, 16), (15, 33, 17), (13, 16, 3), (29, 47, 31), (3, 100, 257),
              (100, 5, 600), (43, 65, 513)]
    for i, (m, n, k) in enumerate(shapes):
        pads = (i % 3, (i + 1) % 4, 2 * (i % 2))
        beta = (0.0, 1.0, 0.5)[i % 3]
        _run(backend, ta, tb, m, n, k, alpha=1.5 if i % 2 else 1.0, beta=beta, pads=pads, seed=i)


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_shapes(backend):
    rng = np.random.default_rng(7)
    for seed in range(12):
        m, n, k = (int(v) for v in rng.integers(1, 90, size=3))
        ta, tb = bool(rng.integers(2)), bool(rng.integers(2))
        pads = tuple(int(v) for v in rng.integers(0, 5, size=3))
        _run(backend, ta, tb, m, n, k, alpha=float(rng.uniform(-2, 2)),
             beta=float(rng.choice([0.0, 1.0, 0.5])), pads=pads, seed=seed)


@pytest.mark.parametrize("backend", BACKENDS)
def test_blocking_boundaries(backend):
    # Several MC (336), KC (256) and NC (1024) blocks, and the beta carried across k slices;
    # both operands packed, or read in place (A when n <= 256, untransposed B when m <= 1024)
    # with their short last strips packed.
    _run(backend, False, False, 700, 1100, 600, alpha=0.75, beta=0.5, pads=(1, 2, 3))
    _run(backend, True, True, 350, 1030, 520, alpha=1.0, beta=1.0)
    _run(backend, False, False, 1100, 250, 300, alpha=1.0, beta=0.5, pads=(3, 0, 1))
    _run(backend, True, False, 1031, 47, 270, alpha=1.0, beta=0.0, pads=(0, 5, 0))


@pytest.mark.parametrize("tb", [False, True])
def test_every_short_strip_row_count(tb):
    # A block's last strip of 1..13 rows runs its own exact-rows kernel (gemm.cpp,
    # short_strip_kernel); batch-1 convs are mostly such strips. Each row count, with a full
    # and a half column strip, B read in place (tb False) or packed (tb True), beta 0 and not,
    # and a k past one KC slice (the beta carried across slices).
    backend = BACKENDS[-1]
    for m in range(1, 30):
        for j, (n, k) in enumerate([(45, 300), (16, 7), (33, 1)]):
            _run(backend, m % 2 == 1, tb, m, n, k, alpha=1.25, beta=(0.0, 0.5)[(m + j) % 2],
                 pads=(m % 3, j, 1), seed=m * 3 + j)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_k_zero_gives_beta_c(backend, beta):
    _run(backend, False, False, 5, 7, 0, alpha=2.0, beta=beta, pads=(0, 0, 1))
    _run(backend, True, True, 17, 33, 0, alpha=1.0, beta=beta)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_beta_zero_ignores_nan_in_c(backend, ta, tb):
    _run(backend, ta, tb, 20, 40, 9, alpha=1.0, beta=0.0, pads=(0, 0, 2), c_fill=np.nan)
    _run(backend, ta, tb, 20, 40, 0, alpha=1.0, beta=0.0, c_fill=np.nan)


def test_alpha_zero_does_not_read_a_or_b():
    a = np.full(12, np.nan, np.float32)
    b = np.full(12, np.nan, np.float32)
    c = np.ones(9, np.float32)
    for backend in BACKENDS:
        _C._sgemm(False, False, 3, 3, 4, 0.0, a, 4, b, 3, 0.5, c, 3, backend)
    np.testing.assert_array_equal(c, 0.5 ** len(BACKENDS))


def test_empty_m_or_n_is_a_no_op():
    c = np.ones(4, np.float32)
    for backend in BACKENDS:
        _C._sgemm(False, False, 0, 4, 3, 1.0, np.ones(1, np.float32), 3,
                  np.ones(12, np.float32), 4, 0.0, c, 4, backend)
        _C._sgemm(False, False, 4, 0, 3, 1.0, np.ones(12, np.float32), 3,
                  np.ones(1, np.float32), 1, 0.0, c, 1, backend)
    np.testing.assert_array_equal(c, 1.0)


def test_hook_checks_buffer_sizes():
    with pytest.raises(ValueError, match="needs"):
        _C._sgemm(False, False, 4, 4, 4, 1.0, np.ones(15, np.float32), 4,
                  np.ones(16, np.float32), 4, 0.0, np.ones(16, np.float32), 4)
    with pytest.raises(ValueError, match="lda"):
        _C._sgemm(False, False, 4, 4, 4, 1.0, np.ones(16, np.float32), 3,
                  np.ones(16, np.float32), 4, 0.0, np.ones(16, np.float32), 4)


def test_backend_knob():
    saved = fastconv.get_gemm_backend()
    try:
        fastconv.set_gemm_backend("openblas")
        assert fastconv.get_gemm_backend() == "openblas"
        assert _C.active_gemm_backend() == "openblas"
        fastconv.set_gemm_backend("auto")
        assert _C.active_gemm_backend() == ("native" if _C.has_native_gemm else "openblas")
        with pytest.raises(ValueError, match="'auto', 'openblas', 'native'"):
            fastconv.set_gemm_backend("mkl")
        if _C.has_native_gemm:
            fastconv.set_gemm_backend("native")
            assert _C.active_gemm_backend() == "native"
        else:
            with pytest.raises(ValueError, match="AVX-512"):
                fastconv.set_gemm_backend("native")
    finally:
        fastconv.set_gemm_backend(saved)


@pytest.mark.skipif(not _C.has_native_gemm, reason="built without AVX-512")
def test_backends_agree_through_the_kernels():
    """The conv and dense kernels give the same result on either backend (within rounding)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 9, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)
    xd = rng.standard_normal((33, 70)).astype(np.float32)
    wd = rng.standard_normal((70, 19)).astype(np.float32)
    saved = fastconv.get_gemm_backend()
    out = {}
    try:
        for backend in ("openblas", "native"):
            fastconv.set_gemm_backend(backend)
            y = _C.conv2d_forward(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
            dw, _ = _C.conv2d_backward_weights(y, x, w.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1, False)
            dx = _C.conv2d_backward_data(y, w, x.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1)
            out[backend] = (y, dw, dx, _C.dense_forward(xd, wd, None))
    finally:
        fastconv.set_gemm_backend(saved)
    for got, want in zip(out["native"], out["openblas"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.skipif(not _C.has_native_gemm, reason="built without AVX-512")
def test_shallow_products():
    # Untransposed A with k <= 64 runs the shallow kernel (gemm.cpp shallow_product: tiles of
    # 6 rows x up to 64 columns, A read in place): every row tail (1..5 rows past the 6-row
    # tiles), column counts around its 16-lane vectors and 64-wide groups, k at both sides of
    # the 64 limit (65: the blocked path), B transposed (packed first where n <= 64, else the
    # blocked path) or not, beta 0 and not, leading dimensions past the row length.
    i = 0
    for k in (1, 5, 32, 63, 64, 65, 128):
        for m in (1, 2, 3, 4, 5, 6, 7, 13, 20):
            n = (1, 16, 17, 48, 64, 65, 100, 130, 33)[i % 9]
            _run("native", False, i % 5 == 4, m, n, k, alpha=(1.0, 1.25)[i % 2],
                 beta=(0.0, 0.5, 1.0)[i % 3], pads=(i % 3, (i + 1) % 4, 2 * (i % 2)), seed=100 + i)
            i += 1


@pytest.mark.skipif(not _C.has_native_gemm, reason="built without AVX-512")
def test_narrow_panels_at_aliasing_row_strides():
    # A panel of B at most 256 wide reads A in place, except untransposed A whose row stride
    # is a multiple of 2 KiB (gemm.cpp rows_alias: 512, 1024, 2048 floats), which is packed:
    # both sides of the rule, row tails past the 14-row strips, K past one 256-deep block.
    i = 0
    for k, pad in ((512, 0), (1024, 0), (1024, 3), (2048, 0), (500, 12), (256, 256)):
        for m, n in ((1, 256), (15, 100), (49, 256), (30, 33)):
            _run("native", False, i % 3 == 2, m, n, k, alpha=1.0, beta=(0.0, 1.0)[i % 2],
                 pads=(pad, i % 2, 0), seed=300 + i)
            i += 1


@pytest.mark.skipif(not _C.has_native_gemm, reason="built without AVX-512")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_shallow_product_propagates_nan_and_inf(bad):
    # A NaN or inf in A reaches exactly its row of C (times B's nonzero entries: all of them
    # here), whatever its row's place in the 6-row tile.
    rng = np.random.default_rng(3)
    m, n, k = 9, 70, 32
    a = rng.uniform(0.5, 1, size=m * k).astype(np.float32)
    b = rng.uniform(0.5, 1, size=k * n).astype(np.float32)
    a[7 * k + 3] = bad
    c = np.zeros(m * n, np.float32)
    _C._sgemm(False, False, m, n, k, 1.0, a, k, b, n, 0.0, c, n, "native")
    c = c.reshape(m, n)
    want = np.isnan(c[7]).all() if np.isnan(bad) else np.isposinf(c[7]).all()
    assert want and np.isfinite(np.delete(c, 7, axis=0)).all()
