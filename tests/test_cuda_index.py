"""The CUDA kernels' per-element index math, checked on the CPU against the NumPy oracle.

`fastconv._C._index_check` runs the very FC_HD functions the GPU threads call
(csrc/common/im2col_index.h, pool_gather.h, act_math.h), one call per output element, so
these tests cover the GPU indexing on machines without a GPU. Inputs are float32; the oracle
runs in float64 and results are compared at float32 accumulation tolerance.
"""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import fastconv
from fastconv import reference as R

IC = fastconv._C._index_check
ACTS = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3}


@st.composite
def conv_cases(draw, depthwise=False):
    groups = draw(st.integers(1, 3))
    cin_g = 1 if depthwise else draw(st.integers(1, 3))
    c = groups * cin_g
    cout = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    assume(h + pads[0] + pads[1] >= (kh - 1) * dilation[0] + 1)
    assume(w + pads[2] + pads[3] >= (kw - 1) * dilation[1] + 1)
    n = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**31))
    return (n, h, w, c), (kh, kw, cin_g, cout), strides, pads, dilation, groups, seed


@st.composite
def pool_cases(draw):
    pool = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = (draw(st.integers(0, pool[0] - 1)), draw(st.integers(0, pool[0] - 1)),
            draw(st.integers(0, pool[1] - 1)), draw(st.integers(0, pool[1] - 1)))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    assume(h + pads[0] + pads[1] >= pool[0] and w + pads[2] + pads[3] >= pool[1])
    x_shape = (draw(st.integers(1, 2)), h, w, draw(st.integers(1, 3)))
    return x_shape, pool, strides, pads, draw(st.integers(0, 2**31))


def _grouped_gemm(col, w, groups):
    """y = col @ W per group, the GEMM fastconv.cuda runs with cuBLAS."""
    kh, kw, cin_g, cout = w.shape
    k, cg = kh * kw * cin_g, cout // groups
    cols = col.reshape(-1, groups, k).astype(np.float64)
    wg = w.reshape(k, groups, cg).astype(np.float64)
    return np.einsum("pgk,kgc->pgc", cols, wg).reshape(-1, cout)


def _close(got, want, scale=1.0):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * max(scale, 1.0))


@given(conv_cases())
def test_im2col_then_gemm_is_the_oracle_convolution(case):
    xs, ws, strides, pads, dil, groups, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    col = IC.im2col(x, ws, strides, pads, dil, groups)
    want = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, strides, pads, dil, groups)
    assert col.shape == (want.shape[0] * want.shape[1] * want.shape[2], groups * ws[0] * ws[1] * ws[2])
    _close(_grouped_gemm(col, w, groups).reshape(want.shape), want)


@given(conv_cases())
def test_col2im_gather_is_the_adjoint_of_im2col(case):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: the gather sums exactly the entries
    # im2col copied, each once (a missed or doubled contribution breaks the identity).
    xs, ws, strides, pads, dil, groups, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(np.float32)
    col = IC.im2col(x, ws, strides, pads, dil, groups)
    c = rng.standard_normal(col.shape).astype(np.float32)
    dx = IC.col2im(c, xs, ws, strides, pads, dil, groups)
    assert dx.shape == xs
    lhs = float(np.dot(col.ravel().astype(np.float64), c.ravel()))
    rhs = float(np.dot(x.ravel().astype(np.float64), dx.ravel()))
    assert abs(lhs - rhs) <= 1e-4 * (1 + abs(lhs))


@given(conv_cases())
def test_col2im_of_dy_wt_is_the_oracle_data_gradient(case):
    xs, ws, strides, pads, dil, groups, seed = case
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(ws).astype(np.float32)
    ys = R.conv2d_forward(np.zeros(xs), w.astype(np.float64), None, strides, pads, dil, groups).shape
    dy = rng.standard_normal(ys).astype(np.float32)
    kh, kw, cin_g, cout = ws
    k, cg = kh * kw * cin_g, cout // groups
    dcol = np.einsum("pgc,kgc->pgk", dy.reshape(-1, groups, cg).astype(np.float64),
                     w.reshape(k, groups, cg).astype(np.float64)).reshape(-1, groups * k)
    got = IC.col2im(dcol.astype(np.float32), xs, ws, strides, pads, dil, groups)
    want = R.conv2d_backward_data(dy.astype(np.float64), w.astype(np.float64), xs, strides, pads, dil, groups)
    _close(got, want, np.abs(want).max(initial=0))


@given(conv_cases(depthwise=True), st.booleans())
def test_depthwise_kernels_match_the_oracle(case, with_bias):
    xs, ws, strides, pads, dil, groups, seed = case
    c = xs[3]
    ws = (ws[0], ws[1], 1, c * max(ws[3] // groups, 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[3]).astype(np.float32) if with_bias else None
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = R.conv2d_forward(x64, w64, None if b is None else b.astype(np.float64), strides, pads, dil, c)
    _close(IC.depthwise_forward(x, w, b, strides, pads, dil), want)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    want_dx = R.conv2d_backward_data(dy.astype(np.float64), w64, xs, strides, pads, dil, c)
    _close(IC.depthwise_backward_data(dy, w, xs, strides, pads, dil), want_dx)
    want_dw, _ = R.conv2d_backward_weights(dy.astype(np.float64), x64, ws, strides, pads, dil, c, False)
    _close(IC.depthwise_backward_weights(dy, x, ws, strides, pads, dil), want_dw, np.abs(want_dw).max())


@given(pool_cases(), st.booleans())
def test_pool_gathers_match_the_oracle(case, ties):
    xs, pool, strides, pads, seed = case
    rng = np.random.default_rng(seed)
    # Small integers force ties: the first cell in row-major window order must win.
    x = (rng.integers(-2, 3, xs) if ties else rng.standard_normal(xs)).astype(np.float32)
    y = R.max_pool2d_forward(x, pool, strides, pads)
    np.testing.assert_array_equal(IC.max_pool2d_forward(x, pool, strides, pads), y)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _close(IC.max_pool2d_backward(dy, x, pool, strides, pads), R.max_pool2d_backward(dy, x, pool, strides, pads))
    x64 = x.astype(np.float64)
    _close(IC.avg_pool2d_forward(x, pool, strides, pads), R.avg_pool2d_forward(x64, pool, strides, pads))
    _close(IC.avg_pool2d_backward(dy, xs, pool, strides, pads),
           R.avg_pool2d_backward(dy.astype(np.float64), xs, pool, strides, pads))


@pytest.mark.parametrize("act", sorted(ACTS))
def test_activation_element_math_matches_the_oracle(act, rng):
    z = (rng.standard_normal((7, 5)) * 4).astype(np.float32)
    z[0, :3] = [-100.0, 100.0, 0.0]  # saturated sigmoid/tanh, relu's kink
    y = R.bias_act_forward(z.astype(np.float64), None, act)
    np.testing.assert_allclose(IC.act_apply(z, ACTS[act]), y, rtol=1e-6, atol=1e-6)
    y32 = y.astype(np.float32)
    dz, _ = R.bias_act_backward(np.ones_like(y32), y32, act, False)
    np.testing.assert_allclose(IC.act_grad_from_output(y32, ACTS[act]), dz, rtol=1e-6, atol=1e-6)


def test_index_check_rejects_bad_geometry_like_the_kernels():
    x = np.zeros((1, 2, 2, 1), np.float32)
    with pytest.raises(ValueError, match="larger than the padded input"):
        IC.im2col(x, (3, 3, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="smaller than the pool size"):
        IC.max_pool2d_forward(x, (2, 2), (1, 1), (2, 0, 0, 0))
