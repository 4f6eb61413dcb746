"""Native conv and dense kernels (fastconv._C) against the NumPy oracle (fastconv.reference).

The oracle runs in float64 on the same float32 inputs; the native float32 results must agree
to rtol 1e-4 and an absolute tolerance of 1e-5 times the output's magnitude.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from fastconv import _C
from fastconv import reference as R
from conv_oracle import check_conv_passes, close as _close
from threads_used import conv_pass_threads




def _rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def _check_conv(rng, n, h, w, cin_g, cout_g, groups, k, strides, pads, dilation, bias=True):
    """Forward, backward data and backward weights of one configuration against the oracle."""
    x = _rand(rng, (n, h, w, cin_g * groups))
    wt = _rand(rng, (k[0], k[1], cin_g, cout_g * groups))
    b = _rand(rng, (cout_g * groups,)) if bias else None
    return check_conv_passes(rng, x, wt, b, (strides, pads, dilation, groups))


# name: (n, h, w, cin_g, cout_g, groups, (kh, kw), strides, (top, bottom, left, right), dilation)
CASES = {
    "batch1_odd": (1, 7, 5, 3, 4, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "stride_gt_kernel": (2, 11, 9, 2, 3, 1, (2, 2), (3, 4), (0, 0, 0, 0), (1, 1)),
    "even_kernel_asym_pads": (2, 6, 7, 3, 5, 1, (4, 2), (1, 1), (1, 2, 0, 1), (1, 1)),
    "dilation": (2, 9, 10, 2, 3, 1, (3, 2), (1, 2), (2, 2, 1, 1), (2, 3)),
    "groups": (2, 6, 6, 3, 2, 4, (3, 3), (2, 1), (1, 1, 1, 1), (1, 1)),
    "depthwise": (2, 8, 7, 1, 1, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "depthwise_multiplier": (2, 7, 8, 1, 3, 5, (3, 2), (2, 1), (1, 2, 0, 1), (2, 1)),
    "pointwise": (3, 5, 4, 7, 6, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    "pointwise_groups": (2, 3, 5, 3, 2, 2, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    "pointwise_strided": (2, 5, 5, 3, 2, 1, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),
    "window_barely_fits": (2, 4, 3, 2, 3, 1, (5, 4), (1, 1), (1, 0, 0, 1), (1, 1)),
    "pads_wider_than_kernel": (1, 3, 3, 2, 2, 1, (2, 2), (2, 2), (3, 4, 4, 3), (1, 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("bias", [True, False])
def test_conv_cases(name, bias):
    n, h, w, cin_g, cout_g, groups, k, s, p, d = CASES[name]
    _check_conv(np.random.default_rng(7), n, h, w, cin_g, cout_g, groups, k, s, p, d, bias)


@st.composite
def conv_configs(draw):
    depthwise = draw(st.booleans())
    groups = draw(st.integers(1, 4))
    cin_g = 1 if depthwise else draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    assume(h + pads[0] + pads[1] >= (kh - 1) * dh + 1 and w + pads[2] + pads[3] >= (kw - 1) * dw + 1)
    return (draw(st.integers(1, 3)), h, w, cin_g, draw(st.integers(1, 4)), groups, (kh, kw),
            (draw(st.integers(1, 4)), draw(st.integers(1, 4))), pads, (dh, dw))


@settings(max_examples=25, deadline=None)
@given(conv_configs(), st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_conv_random_shapes(cfg, bias, tiny_limit, seed):
    old = _C.get_workspace_limit()
    try:
        if tiny_limit:  # the smallest cap: many chunks, often one output row each
            _C.set_workspace_limit(65536)
        _check_conv(np.random.default_rng(seed), *cfg, bias=bias)
    finally:
        _C.set_workspace_limit(old)


@pytest.fixture
def tiny_workspace():
    old = _C.get_workspace_limit()
    _C.set_workspace_limit(65536)
    yield
    _C.set_workspace_limit(old)


@pytest.mark.parametrize("cfg", [
    # col line = 40*72*4 B: ~5 lines per chunk, so chunks end inside images and span two.
    (3, 40, 40, 8, 4, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    # one line (20*5*5*64*4 B) alone exceeds the cap: one output row per chunk.
    (2, 20, 20, 64, 8, 1, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    # grouped + strided + dilated under chunking
    (2, 30, 31, 6, 4, 2, (3, 3), (2, 1), (2, 1, 2, 1), (2, 1)),
    # pointwise: x is chunked in place (no im2col), grouped
    (3, 33, 35, 12, 5, 2, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
])
def test_chunked_workspace(tiny_workspace, cfg):
    assert _C.get_workspace_limit() == 65536
    y_small = _check_conv(np.random.default_rng(3), *cfg)
    _C.set_workspace_limit(32 << 20)
    y_big = _C.conv2d_forward(*_inputs_like(cfg), cfg[7], cfg[8], cfg[9], cfg[5])
    np.testing.assert_allclose(y_small, y_big, rtol=1e-5, atol=1e-5 * np.abs(y_big).max())


def _inputs_like(cfg, seed=3):
    n, h, w, cin_g, cout_g, groups, k = cfg[:7]
    rng = np.random.default_rng(seed)
    x = _rand(rng, (n, h, w, cin_g * groups))
    wt = _rand(rng, (k[0], k[1], cin_g, cout_g * groups))
    return x, wt, _rand(rng, (cout_g * groups,))


def test_workspace_limit_rejects_tiny():
    with pytest.raises(ValueError, match="bytes"):
        _C.set_workspace_limit(1000)


@pytest.mark.parametrize("name", ["batch1_odd", "depthwise_multiplier", "pointwise_groups"])
def test_empty_batch(name):
    _, h, w, cin_g, cout_g, groups, k, s, p, d = CASES[name]
    x = np.zeros((0, h, w, cin_g * groups), np.float32)
    wt = _rand(np.random.default_rng(0), (k[0], k[1], cin_g, cout_g * groups))
    args = (s, p, d, groups)
    y = _C.conv2d_forward(x, wt, None, *args)
    ref = R.conv2d_forward(x, wt, None, *args)
    assert y.shape == ref.shape and y.shape[0] == 0
    dx = _C.conv2d_backward_data(y, wt, x.shape, *args)
    assert dx.shape == x.shape
    dw, db = _C.conv2d_backward_weights(y, x, wt.shape, *args, True)
    assert dw.shape == wt.shape and not dw.any() and db.shape == (wt.shape[3],) and not db.any()


def test_thread_counts_agree():
    # The "groups" case, big enough (>= 2^21 multiply-adds, two chunks) that im2col's three
    # passes run on both threads.
    cfg = (4, 32, 32, 8, 8, 2, (3, 3), (2, 1), (1, 1, 1, 1), (1, 1))
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(1)
        y1 = _check_conv(np.random.default_rng(5), *cfg)
        _C.set_num_threads(2)
        y2 = _check_conv(np.random.default_rng(5), *cfg)
        x = np.ones((4, 32, 32, 16), np.float32)
        used = conv_pass_threads(x, np.ones((3, 3, 8, 16), np.float32), (2, 1), (1, 1, 1, 1), (1, 1), 2)
    finally:
        _C.set_num_threads(old)
    assert _C.conv_algorithm(x.shape, (3, 3, 8, 16), (2, 1), (1, 1, 1, 1), (1, 1), 2) == dict.fromkeys(used, "im2col")
    assert min(used.values()) >= 2, used
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,k,m,bias", [(5, 7, 3, True), (1, 1, 1, False), (33, 64, 17, True), (0, 4, 3, True)])
def test_dense(n, k, m, bias):
    rng = np.random.default_rng(11)
    x, w = _rand(rng, (n, k)), _rand(rng, (k, m))
    b = _rand(rng, (m,)) if bias else None
    y = _C.dense_forward(x, w, b)
    _close(y, R.dense_forward(x.astype(np.float64), w.astype(np.float64),
                              None if b is None else b.astype(np.float64)))
    dy = _rand(rng, (n, m))
    got = _C.dense_backward(dy, x, w)
    ref = R.dense_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64))
    for g, r in zip(got, ref):
        _close(g, r)


# ---- argument errors: a Python exception naming the argument, never a crash ----
X = np.zeros((2, 6, 6, 4), np.float32)
W = np.zeros((3, 3, 4, 8), np.float32)
OK = dict(strides=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1)


def _fwd(x=X, w=W, b=None, **kw):
    return _C.conv2d_forward(x, w, b, **{**OK, **kw})


@pytest.mark.parametrize("call,exc,match", [
    (lambda: _fwd(x=X.astype(np.float64)), TypeError, "x must have dtype float32"),
    (lambda: _fwd(w=W.astype(np.float64)), TypeError, "w must have dtype float32"),
    (lambda: _fwd(x=np.zeros((2, 6, 12, 4), np.float32)[:, :, ::2]), TypeError, "x must be C-contiguous"),
    (lambda: _fwd(x=[[1.0]]), TypeError, "x must be a numpy.ndarray"),
    (lambda: _fwd(b=np.zeros(8)), TypeError, "b must have dtype float32"),
    (lambda: _fwd(x=X[0]), ValueError, "x must be 4-D"),
    (lambda: _fwd(w=W[0]), ValueError, "w must be 4-D"),
    (lambda: _fwd(b=np.zeros(7, np.float32)), ValueError, r"b must have shape \(8,\)"),
    (lambda: _fwd(w=np.zeros((3, 3, 3, 8), np.float32)), ValueError, "channel mismatch"),
    (lambda: _fwd(w=np.zeros((3, 3, 1, 6), np.float32), groups=4), ValueError, "groups=4 must divide"),
    (lambda: _fwd(groups=0), ValueError, "groups must be >= 1"),
    (lambda: _fwd(w=np.zeros((9, 3, 4, 8), np.float32)), ValueError, "larger than the padded input"),
    (lambda: _fwd(strides=(0, 1)), ValueError, "strides must be >= 1"),
    (lambda: _fwd(strides=(1, -2)), ValueError, "strides must be >= 1"),
    (lambda: _fwd(pads=(1, -1, 1, 1)), ValueError, "pads must be >= 0"),
    (lambda: _fwd(dilation=(0, 1)), ValueError, "dilation must be >= 1"),
    (lambda: _fwd(pads=(1, 1)), ValueError, "pads must be a tuple of 4 ints"),
    (lambda: _fwd(strides=(1.5, 1)), TypeError, "strides must be a tuple of 2 ints"),
    (lambda: _fwd(strides=1), TypeError, "strides must be a tuple of 2 ints"),
    (lambda: _C.conv2d_backward_data(np.zeros((2, 6, 6, 8), np.float32), W, (2, 6, 6), **OK),
     ValueError, "x_shape must be a tuple of 4 ints"),
    (lambda: _C.conv2d_backward_data(np.zeros((2, 5, 6, 8), np.float32), W, X.shape, **OK),
     ValueError, r"dy must have shape \(2, 6, 6, 8\)"),
    (lambda: _C.conv2d_backward_data(np.zeros((2, 6, 6, 8)), W, X.shape, **OK), TypeError, "dy must have dtype"),
    (lambda: _C.conv2d_backward_weights(np.zeros((2, 6, 6, 8), np.float32), X, (3, 3, 4, 5), **OK,
                                        with_bias=True), ValueError, r"dy must have shape \(2, 6, 6, 5\)"),
    (lambda: _C.conv2d_backward_weights(np.zeros((2, 6, 6, 8), np.float32), X, (3, 3, 2, 8), **OK,
                                        with_bias=True), ValueError, "channel mismatch"),
    (lambda: _C.dense_forward(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32), None),
     ValueError, r"w must have shape \(K, M\) with K = x.shape\[1\] = 3"),
    (lambda: _C.dense_forward(np.zeros((2, 3)), np.zeros((3, 5), np.float32), None), TypeError, "x must have dtype"),
    (lambda: _C.dense_backward(np.zeros((2, 4), np.float32), np.zeros((2, 3), np.float32),
                               np.zeros((3, 5), np.float32)), ValueError, r"dy must have shape \(2, 5\)"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
