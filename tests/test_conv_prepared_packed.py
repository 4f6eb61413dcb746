"""Prepared weights of the ungrouped convs Winograd does not take (conv2d_prepare: the
KH*KW*Cin x Cout weight matrix packed once for the native GEMM, gemm.h GemmPackedB) against
the unprepared forward and the float64 NumPy reference.

The packed copy feeds the same micro-kernel in the same reduction slices as the weights read
in place, so the outputs are identical; against the reference the tolerance is the im2col one,
max|err| <= 2e-5 * max|ref| (float32 GEMM sums of up to a few thousand products).
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

NATIVE = _C.has_native_gemm
# Below AVX-512 the avx2 level packs the weights of few-row products (at most 64 output
# positions, W of at least 64 KiB) into 16-column panels (infer_packed_avx2.h); the baseline none.
AVX2_PACKED = not NATIVE and _C.isa_level() == "avx2"


def _packed_size(k, cout):
    """conv2d_prepare's size for a packed k x cout W at this level (NATIVE: 32-column strips)."""
    return k * ((cout + 31) // 32 * 32) if NATIVE else k * ((cout + 15) // 16 * 16)

CASES = [  # (x shape, (kh, kw, cout), strides, pads, dilation): batch 1 deep layers and others
    ((1, 4, 4, 96), (3, 3, 160), (1, 1), (1, 1, 1, 1), (1, 1)),    # ResNet conv5 in small: one Winograd tile
    ((1, 7, 7, 64), (3, 3, 70), (1, 1), (1, 1, 1, 1), (1, 1)),     # Cout not a multiple of 32
    ((1, 8, 8, 256), (3, 3, 64), (2, 2), (0, 1, 0, 1), (1, 1)),    # strided, 2.4 MB of weights (no tap GEMM)
    ((1, 9, 11, 40), (5, 5, 96), (1, 1), (2, 2, 2, 2), (1, 1)),    # 5x5 'same'
    ((1, 9, 9, 33), (3, 3, 65), (1, 1), (2, 2, 2, 2), (2, 2)),     # dilation 2
    ((1, 6, 6, 64), (1, 1, 96), (1, 1), (1, 1, 1, 1), (1, 1)),     # a padded 1x1
    ((3, 5, 7, 48), (2, 2, 64), (1, 1), (0, 1, 0, 1), (1, 1)),     # batch 3, even kernel 'same'
    ((1, 3, 3, 600), (3, 3, 64), (1, 1), (0, 0, 0, 0), (1, 1)),    # K = 5400: several reduction slices
]


def _ref(x, w, b, strides, pads, dilation, act, res=None):
    z = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), strides, pads, dilation, 1)
    if res is not None:
        z = z + res
    return {"linear": z, "relu": np.maximum(z, 0)}[act]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, kernel, strides, pads, dilation", CASES)
def test_prepared_packed_equals_unprepared_and_reference(shape, kernel, strides, pads, dilation, threads):
    rng = np.random.default_rng(sum(shape) * 31 + sum(kernel))
    x = rng.standard_normal(shape).astype(np.float32)
    kh, kw, cout = kernel
    w = rng.standard_normal((kh, kw, shape[3], cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    args = (strides, pads, dilation, 1)
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        p = _C.conv2d_prepare(w, x.shape, *args)
        if not NATIVE and (not AVX2_PACKED or p is None):
            assert p is None
            return
        assert p is not None and p.dtype == np.float32 and p.ndim == 1
        assert p.size == _packed_size(kh * kw * shape[3], cout)
        y = _C.conv2d_forward(x, w, b, *args, "linear")
        res = rng.standard_normal(y.shape).astype(np.float32)
        for act, r in (("linear", None), ("relu", res)):
            got = _C.conv2d_forward(x, w, b, *args, act, r, p)
            if NATIVE:  # at avx2 the unprepared pass is OpenBLAS's sgemm: another summation order
                np.testing.assert_array_equal(got, _C.conv2d_forward(x, w, b, *args, act, r))
            ref = _ref(x, w, b, strides, pads, dilation, act, r)
            assert np.abs(got - ref).max() <= 2e-5 * np.abs(ref).max(), act
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.skipif(not (NATIVE or AVX2_PACKED), reason="no packed form at this ISA level")
@pytest.mark.parametrize("threads", [1, 2])
def test_packed_weights_are_what_the_pass_reads(threads):
    # The pass reads the packed copy, not w: a copy of other weights gives their output.
    rng = np.random.default_rng(21)
    x = rng.standard_normal((1, 4, 4, 128)).astype(np.float32)
    w1, w2 = (rng.standard_normal((3, 3, 128, 192)).astype(np.float32) for _ in range(2))
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        p2 = _C.conv2d_prepare(w2, x.shape, *args)
        got = _C.conv2d_forward(x, w1, None, *args, "relu", None, p2)
        if NATIVE:
            np.testing.assert_array_equal(got, _C.conv2d_forward(x, w2, None, *args, "relu"))
        else:  # the sgemm of the unprepared pass sums in another order
            want = _C.conv2d_forward(x, w2, None, *args, "relu")
            assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()
    finally:
        fastconv.set_num_threads(before)


def test_forms_follow_the_geometry():
    rng = np.random.default_rng(22)
    w = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
    same = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    winograd = _C.conv2d_prepare(w, (1, 32, 32, 64), *same)  # 64 tiles: the filter transform
    assert winograd is not None and winograd.size != 9 * 64 * 64
    small = _C.conv2d_prepare(w, (1, 4, 4, 64), *same)  # one tile: Winograd does not pay
    assert (small is None) if not (NATIVE or AVX2_PACKED) else small.size == 9 * 64 * 64
    # a strided conv with small weights and rows of >= 16 outputs runs the tap GEMMs, which
    # read w in place; with shorter rows the im2col GEMM, which reads the packed form
    assert _C.conv2d_prepare(w, (1, 32, 32, 64), (2, 2), (0, 1, 0, 1), (1, 1), 1) is None
    short = _C.conv2d_prepare(w, (1, 16, 16, 64), (2, 2), (0, 1, 0, 1), (1, 1), 1)
    assert (short is None) if not (NATIVE or AVX2_PACKED) else short.size == 9 * 64 * 64
    # few channels: the direct kernels
    assert _C.conv2d_prepare(np.ascontiguousarray(w[:, :, :3, :]), (1, 16, 16, 3), *same) is None


@pytest.mark.skipif(not (NATIVE or AVX2_PACKED), reason="no packed form at this ISA level")
def test_nan_propagates_through_the_packed_pass():
    rng = np.random.default_rng(23)
    x = rng.standard_normal((1, 4, 4, 64)).astype(np.float32)
    x[0, 0, 0, 5] = np.nan
    w = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)  # valid: output 2x2, only y[0, 0] reads x[0, 0]
    p = _C.conv2d_prepare(w, x.shape, *args)
    y = _C.conv2d_forward(x, w, None, *args, "relu", None, p)
    assert np.isnan(y[0, 0, 0]).all() and np.isfinite(y[0, 1:, :]).all() and np.isfinite(y[0, 0, 1]).all()
