"""Stride-1 1x1 convs (groups 1) on avx2 register tiles where the GEMM is OpenBLAS
(csrc/cpu/pointwise_passes_avx2.cpp, stop 38): the forward for Cout a multiple of 16, Cin <= 512 and
Cin x Cout <= 32K (bias and activation in its blocks; with a residual, prepared packed weights,
or one image on 2+ threads the old paths), the backward data for Cout <= 512, Cin a
multiple of 16 and Cin x Cout <= 64K. At AVX-512, the baseline level, and for the other shapes here, the
GEMM paths run the same calls, and these tests check those.

Against the float64 oracle: every element within 1e-5 of the largest magnitude of the result
(a sum of <= 128 products of standard normals, so about 1e-6 relative in float32). Shapes: the
benchmark layer scaled down (28x28 256->64 at N=2), odd H and W, batch 1, pixel counts that
leave partial tiles of 1..5 rows and partial blocks, Cout 1, 17, 64, 100 and 128 (and 129, 192:
past the tiles), Cin 128..512 (and 112, 136: no whole panels of 16, the GEMM's); forward Cin 1..512 (600: past), Cout 16..512 (24, 40: not whole panels), every
activation, with and without bias, a residual, a prepared w. One and two
threads bit-equal; every element of dx written (the tests' outputs start as NaN, conftest.py);
NaN and inf in dy reach exactly that pixel's dx row, in W exactly that input channel.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

ONE, NO_PAD = (1, 1), (0, 0, 0, 0)
ARGS = (ONE, NO_PAD, ONE, 1)


def _operands(seed, n, h, w, cin, cout):
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal((n, h, w, cout)).astype(np.float32)
    wt = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    return dy, wt


def _with_threads(threads, f):
    saved = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        return f()
    finally:
        _C.set_num_threads(saved)


def _check(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.isfinite(got).all()
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * scale)


# (n, h, w, cin, cout)
SHAPES = {
    "item2_scaled": (2, 28, 28, 256, 64),       # 1568 pixels: whole blocks of 24 rows + 8
    "batch1_odd": (1, 13, 11, 256, 64),         # 143 pixels: a partial block, a 5-row tile
    "odd_hw": (3, 7, 9, 128, 64),               # 189 pixels: a 3-row tile
    "one_pixel": (1, 1, 1, 256, 64),            # one 1-row tile
    "two_pixels": (2, 1, 1, 128, 32),
    "k128_c512": (2, 14, 14, 512, 128),
    "k100_c160": (1, 17, 5, 160, 100),          # K not a multiple of 8
    "k17_c144": (3, 5, 5, 144, 17),
    "k1_c128": (2, 6, 6, 128, 1),               # a one-step reduction
    "k128_c1024_past": (1, 7, 7, 1024, 128),    # weights past 64K: the GEMM
    "k256_c256": (1, 5, 7, 256, 256),
    "k512_c128": (1, 4, 5, 128, 512),
    "k600_past": (1, 3, 3, 32, 600),            # past kMaxK: the GEMM
    "k192_c112": (2, 5, 5, 112, 192),
    "c64_k64": (2, 9, 9, 64, 64),
    "c48_k48_odd": (3, 7, 5, 48, 48),
    "c16_k33": (2, 6, 6, 16, 33),
    "c24_no_panels": (2, 9, 9, 24, 64),         # Cin not a multiple of 16: the GEMM
    "c136_partial_panel": (1, 10, 10, 136, 64),  # Cin not a multiple of 16: the GEMM
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_backward_data_matches_oracle(name):
    n, h, w, cin, cout = SHAPES[name]
    dy, wt = _operands(11, n, h, w, cin, cout)
    ref = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), (n, h, w, cin), *ARGS)
    _check(_C.conv2d_backward_data(dy, wt, (n, h, w, cin), *ARGS), ref)


@pytest.mark.parametrize("name", ["item2_scaled", "batch1_odd", "k128_c512", "odd_hw"])
def test_backward_data_threads_bit_equal(name):
    n, h, w, cin, cout = SHAPES[name]
    dy, wt = _operands(12, n, h, w, cin, cout)
    run = lambda: _C.conv2d_backward_data(dy, wt, (n, h, w, cin), *ARGS)  # noqa: E731
    one, two = _with_threads(1, run), _with_threads(2, run)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("cin,cout", [(256, 64), (128, 128), (144, 17), (48, 256)])
def test_backward_data_nan_inf_reach_their_pixel_and_channel_only(cin, cout):
    n, h, w = 2, 11, 7
    dy, wt = _operands(13, n, h, w, cin, cout)
    dy[0, 3, 4, 5] = np.nan
    dy[1, 10, 6, cout - 1] = np.inf
    got = _C.conv2d_backward_data(dy, wt, (n, h, w, cin), *ARGS)
    assert np.isnan(got[0, 3, 4]).all()
    # inf times weights of both signs: +-inf or, where they cancel, NaN; never finite
    assert (~np.isfinite(got[1, 10, 6])).all()
    rest = np.ones((n, h, w), bool)
    rest[0, 3, 4] = rest[1, 10, 6] = False
    assert np.isfinite(got[rest]).all()
    dy2, wt2 = _operands(14, n, h, w, cin, cout)
    wt2[0, 0, cin - 3, 0] = np.nan
    got = _C.conv2d_backward_data(dy2, wt2, (n, h, w, cin), *ARGS)
    assert np.isnan(got[..., cin - 3]).all()
    assert np.isfinite(np.delete(got, cin - 3, axis=-1)).all()


def test_backward_data_strided_and_padded_keep_their_paths():
    # 1x1 with a stride or a pad is not pointwise: the same results as the oracle either way
    dy, wt = _operands(15, 2, 5, 5, 256, 64)
    for strides, pads, shape in (((2, 2), NO_PAD, (2, 9, 9, 256)), (ONE, (1, 1, 1, 1), (2, 3, 3, 256))):
        args = (strides, pads, ONE, 1)
        ref = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), shape, *args)
        _check(_C.conv2d_backward_data(dy, wt, shape, *args), ref)


# (n, h, w, cin, cout)
FWD_SHAPES = {
    "item2_scaled": (2, 28, 28, 256, 64),
    "batch1_odd": (1, 13, 11, 256, 64),          # 143 pixels: partial tiles and items
    "odd_hw": (3, 7, 9, 64, 64),
    "one_pixel": (1, 1, 1, 256, 64),
    "k64_c256": (2, 9, 9, 64, 256),
    "k128_c128": (2, 10, 10, 128, 128),
    "k128_c128_lines": (2, 24, 24, 128, 128),    # on 2 threads also cout_split.cpp (chunk budget)
    "k512_c64": (1, 7, 7, 512, 64),              # the largest weights taken (32K)
    "k512_c128_past": (1, 7, 7, 512, 128),       # weights past 32K: the GEMM
    "k1_c16": (2, 5, 5, 1, 16),                  # a one-step reduction, one panel
    "k3_c32": (2, 6, 7, 3, 32),
    "k100_c48": (2, 8, 8, 100, 48),              # K not a multiple of 8
    "k600_past": (1, 5, 5, 600, 64),             # past kFwdMaxK: the GEMM
    "k256_c256_past": (1, 4, 4, 256, 256),       # weights past 32K: the GEMM
    "c24_no_panels": (2, 6, 6, 64, 24),          # Cout not a multiple of 16: the GEMM
    "c40_no_panels": (1, 9, 9, 128, 40),
}


def _fwd_operands(seed, n, h, w, cin, cout):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return rng, x, wt, b


def _fwd_oracle(x, wt, b, act="linear", residual=None):
    y = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None if b is None else b.astype(np.float64),
                         *ARGS)
    if residual is not None:
        y = y + residual
    return {"linear": lambda v: v, "relu": lambda v: np.maximum(v, 0), "relu6": lambda v: np.clip(v, 0, 6),
            "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh}[act](y)


@pytest.mark.parametrize("name", sorted(FWD_SHAPES))
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_matches_oracle(name, with_bias):
    n, h, w, cin, cout = FWD_SHAPES[name]
    _, x, wt, b = _fwd_operands(21, n, h, w, cin, cout)
    b = b if with_bias else None
    _check(_C.conv2d_forward(x, wt, b, *ARGS), _fwd_oracle(x, wt, b))


@pytest.mark.parametrize("act", ["relu", "relu6", "sigmoid", "tanh"])
def test_forward_activations(act):
    n, h, w, cin, cout = FWD_SHAPES["batch1_odd"]
    _, x, wt, b = _fwd_operands(22, n, h, w, cin, cout)
    x *= 0.05  # relu6's clip and sigmoid's range both reached
    _check(_C.conv2d_forward(x, wt, b, *ARGS, act), _fwd_oracle(x, wt, b, act))


def test_forward_residual_and_prepared():
    n, h, w, cin, cout = FWD_SHAPES["item2_scaled"]
    rng, x, wt, b = _fwd_operands(23, n, h, w, cin, cout)
    res = rng.standard_normal((n, h, w, cout)).astype(np.float32)
    _check(_C.conv2d_forward(x, wt, b, *ARGS, "relu", res), _fwd_oracle(x, wt, b, "relu", res))
    prepared = _C.conv2d_prepare(wt, x.shape, *ARGS)
    _check(_C.conv2d_forward(x, wt, b, *ARGS, "linear", None, prepared), _fwd_oracle(x, wt, b))


# One image on 2 threads keeps the item team's GEMM chunks (a different order of the sums from
# the tiles at 1 thread: DESIGN.md promises bitwise repeatability per thread count only); it is
# checked against the oracle instead.
@pytest.mark.parametrize("name", ["item2_scaled", "odd_hw"])
def test_forward_threads_bit_equal(name):
    n, h, w, cin, cout = FWD_SHAPES[name]
    _, x, wt, b = _fwd_operands(24, n, h, w, cin, cout)
    run = lambda: _C.conv2d_forward(x, wt, b, *ARGS, "relu")  # noqa: E731
    one, two = _with_threads(1, run), _with_threads(2, run)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("cin,cout", [(256, 64), (64, 256), (3, 32)])
def test_forward_nan_inf_reach_their_pixel_and_channel_only(cin, cout):
    n, h, w = 2, 11, 7
    _, x, wt, b = _fwd_operands(25, n, h, w, cin, cout)
    x[0, 3, 4, cin - 1] = np.nan
    x[1, 10, 6, 0] = np.inf
    got = _C.conv2d_forward(x, wt, b, *ARGS)
    assert np.isnan(got[0, 3, 4]).all()
    assert (~np.isfinite(got[1, 10, 6])).all()
    rest = np.ones((n, h, w), bool)
    rest[0, 3, 4] = rest[1, 10, 6] = False
    assert np.isfinite(got[rest]).all()
    _, x2, wt2, b2 = _fwd_operands(26, n, h, w, cin, cout)
    wt2[0, 0, 0, cout - 2] = np.nan
    b2[1] = np.nan
    got = _C.conv2d_forward(x2, wt2, b2, *ARGS, "relu")  # relu keeps NaN
    assert np.isnan(got[..., cout - 2]).all() and np.isnan(got[..., 1]).all()
    assert np.isfinite(np.delete(got, [1, cout - 2], axis=-1)).all()


def test_forward_one_image_two_threads():
    n, h, w, cin, cout = FWD_SHAPES["batch1_odd"]
    _, x, wt, b = _fwd_operands(27, n, h, w, cin, cout)
    got = _with_threads(2, lambda: _C.conv2d_forward(x, wt, b, *ARGS, "relu"))
    _check(got, _fwd_oracle(x, wt, b, "relu"))
