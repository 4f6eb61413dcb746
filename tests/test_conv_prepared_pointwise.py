"""Prepared 1x1 conv weights (conv2d_prepare of an ungrouped stride-1 unpadded 1x1 conv: the
Cin x Cout weights packed once for the native GEMM, gemm.h GemmPackedB) against the
unprepared forward and the float64 NumPy reference.

The packed weights feed the same micro-kernel in the same reduction slices as the unprepared
pass, so the outputs are identical; against the reference the tolerance is the im2col one,
max|err| <= 1e-5 * max|ref| (float32 GEMM sums of up to a few hundred products).
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

NATIVE = _C.has_native_gemm  # the packed form exists where the native GEMM is compiled in
# Below AVX-512 the avx2 level packs the weights of few-row products (at most 64 output
# positions, W of at least 64 KiB) into 16-column panels (infer_packed_avx2.h); the baseline none.
AVX2_PACKED = not NATIVE and _C.isa_level() == "avx2"
ARGS = ((1, 1), (0, 0, 0, 0), (1, 1), 1)


def _case(rng, n, h, w, cin, cout):
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return x, wt, b


def _ref(x, wt, b, act, res=None):
    z = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *ARGS)
    if res is not None:
        z = z + res
    return {"linear": z, "relu": np.maximum(z, 0), "relu6": np.clip(z, 0, 6), "sigmoid": 1 / (1 + np.exp(-z))}[act]


SHAPES = [  # (n, h, w, cin, cout): batch 1 and more, odd sizes, Cout not a multiple of 32
    (1, 7, 7, 64, 96),       # MobileNet's deep layers in small: 49 rows
    (1, 1, 1, 40, 1000),     # a classifier conv: one row, 1000 columns
    (1, 5, 3, 300, 70),      # K over two reduction slices, a short last column strip
    (3, 9, 11, 33, 65),      # batch 3, odd everything
    (1, 37, 31, 48, 64),     # more than 1024 rows: the path that packed B per call
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n, h, w, cin, cout", SHAPES)
def test_prepared_pointwise_equals_unprepared_and_reference(n, h, w, cin, cout, threads):
    rng = np.random.default_rng(n * 1000 + cin * cout)
    x, wt, b = _case(rng, n, h, w, cin, cout)
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        p = _C.conv2d_prepare(wt, x.shape, *ARGS)
        if not NATIVE and (not AVX2_PACKED or p is None):
            assert p is None
            return
        assert p is not None and p.dtype == np.float32 and p.ndim == 1
        assert p.size == cin * ((cout + 31) // 32 * 32 if NATIVE else (cout + 15) // 16 * 16)
        res = rng.standard_normal((n, h, w, cout)).astype(np.float32)
        for act, r in (("linear", None), ("relu", None), ("relu6", res), ("sigmoid", None)):
            got = _C.conv2d_forward(x, wt, b, *ARGS, act, r, p)
            if NATIVE:  # at avx2 the unprepared pass is OpenBLAS's sgemm: another summation order
                np.testing.assert_array_equal(got, _C.conv2d_forward(x, wt, b, *ARGS, act, r))
            ref = _ref(x, wt, b, act, r)
            assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max(), act
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.skipif(not NATIVE, reason="no native GEMM at this ISA level: no packed form")
@pytest.mark.parametrize("threads", [1, 2])
def test_packed_weights_are_what_the_pass_reads(threads):
    # The pass reads the packed copy, not w: a copy of other weights gives their output (so a
    # stale copy would show; the inference plan rebuilds it on a weight change).
    rng = np.random.default_rng(11)
    x, w1, b = _case(rng, 1, 14, 14, 96, 128)
    w2 = rng.standard_normal(w1.shape).astype(np.float32)
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        p2 = _C.conv2d_prepare(w2, x.shape, *ARGS)
        np.testing.assert_array_equal(_C.conv2d_forward(x, w1, b, *ARGS, "relu", None, p2),
                                      _C.conv2d_forward(x, w2, b, *ARGS, "relu"))
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.skipif(not NATIVE, reason="no native GEMM at this ISA level: no packed form")
def test_nan_propagates_through_the_packed_pass():
    rng = np.random.default_rng(12)
    x, wt, b = _case(rng, 1, 6, 5, 64, 64)
    x[0, 2, 3, 7] = np.nan
    p = _C.conv2d_prepare(wt, x.shape, *ARGS)
    y = _C.conv2d_forward(x, wt, b, *ARGS, "relu", None, p)
    assert np.isnan(y[0, 2, 3]).all() and np.isfinite(np.delete(y.reshape(-1, 64), 2 * 5 + 3, axis=0)).all()


def test_no_packed_form_where_the_pass_would_not_read_it():
    rng = np.random.default_rng(13)
    x, wt, b = _case(rng, 1, 8, 8, 16, 16)
    assert _C.conv2d_prepare(wt, x.shape, *ARGS) is None  # few channels: the per-pixel map
    x, wt, b = _case(rng, 1, 8, 8, 64, 64)
    # strided, rows of >= 16 outputs: the tap GEMMs read w in place
    assert _C.conv2d_prepare(wt, (1, 32, 32, 64), (2, 2), (0, 0, 0, 0), (1, 1), 1) is None
    # (a padded 1x1 runs im2col: it has the packed form of test_conv_prepared_packed.py)
    if not NATIVE:
        return
    p = _C.conv2d_prepare(wt, x.shape, *ARGS)
    assert p is not None
    saved = fastconv.get_gemm_backend()
    fastconv.set_gemm_backend("openblas")
    try:
        assert _C.conv2d_prepare(wt, x.shape, *ARGS) is None
        # given anyway, the OpenBLAS pass ignores it and reads w: still the right output
        got = _C.conv2d_forward(x, wt, b, *ARGS, "relu", None, p)
        ref = _ref(x, wt, b, "relu")
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    finally:
        fastconv.set_gemm_backend(saved)


def test_bad_prepared_weights_raise_naming_the_argument():
    rng = np.random.default_rng(14)
    x, wt, b = _case(rng, 1, 8, 8, 64, 96)
    p = _C.conv2d_prepare(wt, x.shape, *ARGS)
    p = p if p is not None else np.zeros(64 * 96, np.float32)  # without the form, any is wrong
    bad_size = p[:-1] if NATIVE else p
    with pytest.raises(ValueError, match="prepared"):
        _C.conv2d_forward(x, wt, b, *ARGS, "linear", None, bad_size)
    w_other = rng.standard_normal((1, 1, 64, 200)).astype(np.float32)  # another Cout: another size
    with pytest.raises(ValueError, match="prepared"):
        _C.conv2d_forward(x, w_other, None, *ARGS, "linear", None, p)
    with pytest.raises((ValueError, TypeError), match="prepared"):
        _C.conv2d_forward(x, wt, b, *ARGS, "linear", None, p.reshape(1, -1))
    with pytest.raises((ValueError, TypeError), match="prepared"):
        _C.conv2d_forward(x, wt, b, *ARGS, "linear", None, p.astype(np.float64))


# Cin <= 64 with Cout > 32 (so not the narrow per-pixel map): the GEMM's shallow kernel, which
# applies bias, residual and activation in registers (gemm.cpp shallow_product).
SHALLOW_SHAPES = [  # (n, h, w, cin, cout)
    (1, 11, 13, 32, 64),     # MobileNet's conv_pw_1 in small, odd sizes (143 rows: 6-row tail 5)
    (2, 7, 9, 64, 128),      # batch 2, two 64-wide column groups
    (1, 5, 5, 64, 70),       # k at the limit, a 6-wide last column group
    (3, 4, 3, 48, 33),       # batch 3, one row short of a tile per 6, two vectors (33 columns)
]


@pytest.mark.parametrize("n, h, w, cin, cout", SHALLOW_SHAPES)
def test_shallow_pointwise_against_reference(n, h, w, cin, cout):
    rng = np.random.default_rng(n * 7 + cin + cout)
    x, wt, b = _case(rng, n, h, w, cin, cout)
    res = rng.standard_normal((n, h, w, cout)).astype(np.float32)
    p = _C.conv2d_prepare(wt, x.shape, *ARGS)
    for act, r in (("linear", None), ("relu", None), ("relu6", res), ("relu", res)):
        for prepared in (None, p):
            got = _C.conv2d_forward(x, wt, b, *ARGS, act, r, prepared)
            ref = _ref(x, wt, b, act, r)
            assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max(), (act, prepared is None)
    got = _C.conv2d_forward(x, wt, None, *ARGS, "linear", None, p)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *ARGS)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("act", ["relu", "relu6", "linear"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_shallow_pointwise_propagates_nan_and_inf(act, bad):
    # A non-finite input pixel gives its output pixel what the reference gives (NaN: NaN in
    # every channel, relu and relu6 included; inf: +-inf per channel, which relu / relu6 then
    # clip like any value), and no other pixel changes from the all-finite pass.
    rng = np.random.default_rng(21)
    x, wt, b = _case(rng, 2, 5, 7, 32, 64)
    clean = _C.conv2d_forward(x, wt, b, *ARGS, act).reshape(-1, 64)
    x[1, 3, 6, 9] = bad
    row = 35 + 3 * 7 + 6
    want = _ref(x, wt, b, act).reshape(-1, 64)[row].astype(np.float32)
    assert np.isnan(want).all() if np.isnan(bad) else act != "linear" or np.isinf(want).all()
    p = _C.conv2d_prepare(wt, x.shape, *ARGS)
    for prepared in (None, p):
        y = _C.conv2d_forward(x, wt, b, *ARGS, act, None, prepared).reshape(-1, 64)
        np.testing.assert_array_equal(y[row], want)
        np.testing.assert_array_equal(np.delete(y, row, axis=0), np.delete(clean, row, axis=0))
