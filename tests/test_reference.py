"""The NumPy oracle (fastconv.reference) against hand-worked numbers, its own loop-based naive
conv, float64 finite differences, and (when installed) PyTorch."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from fastconv import reference as R
from fastconv.reference.gradcheck import check_grad, numeric_grad

import seeds

RNG = np.random.default_rng(20261123)


@pytest.fixture(autouse=True)
def _per_test_RNG(request):
    # Each test draws from its own generator, seeded by its name, so it sees the same numbers
    # run alone (-k) or in the full suite. (Parameters drawn at import come from RNG as seeded
    # above: import order is fixed, so they reproduce too.)
    global RNG
    RNG = seeds.per_test_rng(request)


def randn(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


def distinct(*shape):
    """Values spaced 0.1 apart in random order: no max-pool ties, no kink within eps."""
    return (RNG.permutation(int(np.prod(shape))) * 0.1 - 1.0).reshape(shape)


# ---------------------------------------------------------------- hand-worked cases

def test_conv_hand_worked_3x3_input_2x2_kernel():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)   # [[1,2,3],[4,5,6],[7,8,9]]
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    y = R.conv2d_forward(x, w, np.array([0.5]), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    # e.g. top-left: 1*1 + 2*2 + 4*3 + 5*4 = 37
    np.testing.assert_array_equal(y[0, :, :, 0], [[37.5, 47.5], [67.5, 77.5]])
    # stride 2 with one pad row/col at the end: windows at (0,0), (0,2), (2,0), (2,2)
    y = R.conv2d_forward(x, w, None, (2, 2), (0, 1, 0, 1), (1, 1), 1)
    np.testing.assert_array_equal(y[0, :, :, 0], [[37, 3 + 6 * 3], [7 + 8 * 2, 9]])
    # dilation 2: the 2x2 kernel reads the corners of the 3x3 input
    y = R.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0), (2, 2), 1)
    assert y.shape == (1, 1, 1, 1) and y.item() == 1 * 1 + 3 * 2 + 7 * 3 + 9 * 4


def test_conv_backward_hand_worked():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    dy = np.ones((1, 2, 2, 1))
    dx = R.conv2d_backward_data(dy, w, x.shape, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    # each input cell collects the kernel taps that touch it
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    dw, db = R.conv2d_backward_weights(dy, x, w.shape, (1, 1), (0, 0, 0, 0), (1, 1), 1, True)
    np.testing.assert_array_equal(dw[:, :, 0, 0], [[1 + 2 + 4 + 5, 2 + 3 + 5 + 6], [4 + 5 + 7 + 8, 5 + 6 + 8 + 9]])
    np.testing.assert_array_equal(db, [4.0])
    assert R.conv2d_backward_weights(dy, x, w.shape, (1, 1), (0, 0, 0, 0), (1, 1), 1, False)[1] is None


def test_grouped_conv_hand_worked():
    # 2 groups, 1 channel each: output channel 0 reads input channel 0 only, and 1 reads 1.
    x = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 10.0)], axis=-1)[None]
    w = np.ones((1, 1, 1, 2)) * np.array([2.0, 3.0])
    y = R.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 2)
    np.testing.assert_array_equal(y[0, 0, 0], [2.0, 30.0])


def test_pools_hand_worked():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    y = R.max_pool2d_forward(x, (2, 2), (1, 1), (0, 0, 0, 0))
    np.testing.assert_array_equal(y[0, :, :, 0], [[5, 6], [8, 9]])
    # 'same' 3x3 average: corners average 4 real cells, edges 6, the centre 9
    y = R.avg_pool2d_forward(x, (3, 3), (1, 1), (1, 1, 1, 1))
    np.testing.assert_allclose(y[0, :, :, 0], [[3.0, 3.5, 4.0], [4.5, 5.0, 5.5], [6.0, 6.5, 7.0]])
    dx = R.avg_pool2d_backward(np.ones((1, 3, 3, 1)), x.shape, (3, 3), (1, 1), (1, 1, 1, 1))
    corner = 1 / 4 + 2 / 6 + 1 / 9
    np.testing.assert_allclose(dx[0, 0, 0, 0], corner)
    np.testing.assert_allclose(R.global_avg_pool2d_forward(x), [[5.0]])
    np.testing.assert_array_equal(R.global_avg_pool2d_backward(np.array([[9.0]]), x.shape), np.ones(x.shape))


def test_max_pool_padding_never_wins_and_ties_go_first():
    x = np.full((1, 2, 2, 1), -5.0)   # every real cell is below the zero a pad would hold
    y = R.max_pool2d_forward(x, (2, 2), (1, 1), (1, 0, 1, 0))
    np.testing.assert_array_equal(y, np.full((1, 2, 2, 1), -5.0))
    x = np.full((1, 2, 2, 1), -np.inf)  # even -inf real cells beat the padding
    dx = R.max_pool2d_backward(np.ones((1, 2, 2, 1)), x, (2, 2), (1, 1), (1, 0, 1, 0))
    # every window's first real cell is (0, 0): padding comes earlier in three of them
    np.testing.assert_array_equal(dx[0, :, :, 0], [[4, 0], [0, 0]])
    # all four cells tie: the gradient goes to the first in row-major order
    x = np.ones((1, 2, 2, 1))
    dx = R.max_pool2d_backward(np.full((1, 1, 1, 1), 7.0), x, (2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[7, 0], [0, 0]])
    x = np.array([[1.0, 3.0], [3.0, 2.0]]).reshape(1, 2, 2, 1)
    dx = R.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, (2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 1], [0, 0]])


def test_small_ops_hand_worked():
    np.testing.assert_allclose(R.softmax_forward(np.array([[0.0, np.log(3.0)]])), [[0.25, 0.75]])
    y, mean, var, inv_std = R.batch_norm_forward_train(np.array([[1.0], [3.0]]), np.array([2.0]),
                                                       np.array([0.5]), 1e-3)
    np.testing.assert_allclose(mean, [2.0])
    np.testing.assert_allclose(var, [1.0])   # biased: divides by m = 2, not m - 1
    np.testing.assert_allclose(inv_std, [1 / np.sqrt(1.001)])
    np.testing.assert_allclose(y[:, 0], [0.5 - 2 / np.sqrt(1.001), 0.5 + 2 / np.sqrt(1.001)])
    y = R.batch_norm_forward_inference(np.array([[4.0]]), np.array([2.0]), np.array([1.0]),
                                       np.array([1.0]), np.array([8.999]), 1e-3)
    np.testing.assert_allclose(y, [[1.0 + 2.0 * 3.0 / 3.0]])
    np.testing.assert_array_equal(R.dense_forward(np.array([[1.0, 2.0]]), np.array([[1.0], [10.0]]),
                                                  np.array([0.5])), [[21.5]])
    x, b = np.array([[-1.0, 0.5]]), np.array([0.25, 0.25])
    np.testing.assert_array_equal(R.bias_act_forward(x, b, "relu"), [[0.0, 0.75]])
    np.testing.assert_array_equal(R.bias_act_forward(x, None, "linear"), x)
    np.testing.assert_allclose(R.bias_act_forward(np.array([[0.0]]), None, "sigmoid"), [[0.5]])
    dz, db = R.bias_act_backward(np.array([[2.0, 2.0], [3.0, 3.0]]), np.array([[0.0, 0.5], [1.0, 0.0]]),
                                 "relu", True)
    np.testing.assert_array_equal(dz, [[0.0, 2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(db, [3.0, 2.0])
    loss, probs = R.softmax_cross_entropy_forward(np.array([[0.0, np.log(3.0)]]), np.array([1]))
    np.testing.assert_allclose(loss, [-np.log(0.75)])
    np.testing.assert_allclose(R.softmax_cross_entropy_backward(probs, np.array([1]), np.array([2.0])),
                               [[0.5, -0.5]])


# ---------------------------------------------------------------- im2col conv vs naive loops

@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin_g, cout_g = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 5)), draw(st.integers(1, 5))   # may exceed the kernel
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))      # independent: asymmetric
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    # extra == 0: the window barely fits the padded input
    h = max(1, span_h - pads[0] - pads[1]) + draw(st.integers(0, 4))
    w = max(1, span_w - pads[2] - pads[3]) + draw(st.integers(0, 4))
    n = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    return (n, h, w, groups * cin_g), (kh, kw, cin_g, groups * cout_g), (sh, sw), pads, (dh, dw), groups, bias


def _adjoint_check(x, w, dy, args):
    """<conv(x, w), dy> == <x, backward_data(dy)> == <w, backward_weights(dy)>: the backward
    passes are the exact adjoints of the (bias-free) forward."""
    y_dot = np.sum(R.conv2d_forward(x, w, None, *args) * dy)
    dx = R.conv2d_backward_data(dy, w, x.shape, *args)
    dw, _ = R.conv2d_backward_weights(dy, x, w.shape, *args, False)
    np.testing.assert_allclose(np.sum(x * dx), y_dot, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.sum(w * dw), y_dot, rtol=1e-10, atol=1e-10)


@given(conv_cases())
def test_conv_im2col_matches_naive(case):
    x_shape, w_shape, strides, pads, dilation, groups, bias = case
    x, w = randn(*x_shape), randn(*w_shape)
    b = randn(w_shape[3]) if bias else None
    args = (strides, pads, dilation, groups)
    y = R.conv2d_forward(x, w, b, *args)
    np.testing.assert_allclose(y, R.conv2d_forward_naive(x, w, b, *args), rtol=1e-12, atol=1e-12)
    _adjoint_check(x, w, randn(*y.shape), args)


@pytest.mark.parametrize("x_shape,w_shape,strides,pads,dilation,groups", [
    ((1, 5, 7, 3), (3, 3, 3, 4), (1, 1), (1, 1, 1, 1), (1, 1), 1),   # batch 1, odd sizes, 'same'
    ((2, 6, 6, 4), (3, 3, 1, 8), (2, 2), (0, 1, 0, 1), (1, 1), 4),   # depthwise, multiplier 2
    ((2, 4, 5, 6), (1, 1, 6, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1),   # pointwise 1x1
    ((1, 9, 9, 2), (2, 2, 2, 3), (4, 3), (0, 0, 0, 0), (1, 1), 1),   # stride > kernel
    ((1, 7, 6, 4), (3, 2, 2, 2), (1, 2), (2, 0, 0, 1), (2, 3), 2),   # dilated, asymmetric pads
    ((1, 3, 2, 1), (3, 3, 1, 1), (1, 1), (1, 1, 0, 1), (2, 1), 1),   # window exactly fits
])
def test_conv_named_cases_match_naive(x_shape, w_shape, strides, pads, dilation, groups):
    x, w, b = randn(*x_shape), randn(*w_shape), randn(w_shape[3])
    args = (strides, pads, dilation, groups)
    np.testing.assert_allclose(R.conv2d_forward(x, w, b, *args),
                               R.conv2d_forward_naive(x, w, b, *args), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- pools vs loops

def _pool_naive(x, pool, strides, pads, reduce):
    """Pool with loops over real cells only (padding is simply absent from each window)."""
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - pool[0]) // strides[0] + 1
    ow = (w + pads[2] + pads[3] - pool[1]) // strides[1] + 1
    y = np.empty((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * strides[0] - pads[0], j * strides[1] - pads[2]
            win = x[:, max(r0, 0):r0 + pool[0], max(c0, 0):c0 + pool[1], :]
            y[:, i, j, :] = reduce(win, axis=(1, 2))
    return y


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
       st.lists(st.integers(0, 3), min_size=4, max_size=4), st.integers(0, 3), st.integers(0, 3))
def test_pools_match_loops(kh, kw, sh, sw, pads, eh, ew):
    pads = (min(pads[0], kh - 1), min(pads[1], kh - 1), min(pads[2], kw - 1), min(pads[3], kw - 1))
    x = randn(2, max(1, kh - pads[0] - pads[1]) + eh, max(1, kw - pads[2] - pads[3]) + ew, 3)
    for fwd, reduce in ((R.max_pool2d_forward, np.max), (R.avg_pool2d_forward, np.mean)):
        np.testing.assert_allclose(fwd(x, (kh, kw), (sh, sw), pads),
                                   _pool_naive(x, (kh, kw), (sh, sw), pads, reduce), rtol=1e-12)


# ---------------------------------------------------------------- gradients by finite differences

CONV_ARGS = [((2, 1), (1, 0, 2, 1), (1, 2), 2),     # grouped, strided, dilated, asymmetric pads
             ((1, 2), (1, 1, 0, 1), (2, 1), 3)]     # depthwise (groups == C)


@pytest.mark.parametrize("args", CONV_ARGS)
def test_conv_gradients(args):
    groups = args[3]
    x = randn(2, 5, 6, 3 if groups == 3 else 4)
    w = randn(3, 2, x.shape[3] // groups, 6)
    b = randn(6)
    dy = randn(*R.conv2d_forward(x, w, b, *args).shape)
    check_grad(lambda x_: np.sum(R.conv2d_forward(x_, w, b, *args) * dy), x,
               R.conv2d_backward_data(dy, w, x.shape, *args), name="x")
    dw, db = R.conv2d_backward_weights(dy, x, w.shape, *args, True)
    check_grad(lambda w_: np.sum(R.conv2d_forward(x, w_, b, *args) * dy), w, dw, name="w")
    check_grad(lambda b_: np.sum(R.conv2d_forward(x, w, b_, *args) * dy), b, db, name="b")


@pytest.mark.parametrize("pool,strides,pads", [((3, 3), (2, 2), (1, 1, 1, 1)),   # padded windows
                                               ((2, 3), (1, 2), (0, 1, 2, 0)),   # overlapping, asymmetric
                                               ((2, 2), (2, 2), (0, 0, 0, 0))])
def test_pool_gradients(pool, strides, pads):
    x = distinct(2, 5, 6, 2)
    dy = randn(*R.max_pool2d_forward(x, pool, strides, pads).shape)
    check_grad(lambda x_: np.sum(R.max_pool2d_forward(x_, pool, strides, pads) * dy), x,
               R.max_pool2d_backward(dy, x, pool, strides, pads), name="max_pool x")
    check_grad(lambda x_: np.sum(R.avg_pool2d_forward(x_, pool, strides, pads) * dy), x,
               R.avg_pool2d_backward(dy, x.shape, pool, strides, pads), name="avg_pool x")


def test_global_avg_pool_gradient():
    x, dy = randn(2, 3, 4, 5), randn(2, 5)
    check_grad(lambda x_: np.sum(R.global_avg_pool2d_forward(x_) * dy), x,
               R.global_avg_pool2d_backward(dy, x.shape))


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 4, 3)])
def test_batch_norm_gradients(shape):
    x, gamma, beta = randn(*shape) * 2 + 1, randn(shape[-1]), randn(shape[-1])
    eps = 1e-3
    dy = randn(*shape)

    def loss(x_=x, gamma_=gamma, beta_=beta):
        return np.sum(R.batch_norm_forward_train(x_, gamma_, beta_, eps)[0] * dy)

    _, mean, _, inv_std = R.batch_norm_forward_train(x, gamma, beta, eps)
    dx, dgamma, dbeta = R.batch_norm_backward(dy, x, gamma, mean, inv_std)
    check_grad(lambda x_: loss(x_=x_), x, dx, name="x")
    check_grad(lambda g_: loss(gamma_=g_), gamma, dgamma, name="gamma")
    check_grad(lambda b_: loss(beta_=b_), beta, dbeta, name="beta")


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
def test_bias_act_gradients(activation):
    b = randn(4)
    x = distinct(3, 2, 4) * 3 - b       # z = x + b on a 0.3 grid offset from 0: no relu kink
    x += 0.15
    dy = randn(*x.shape)
    y = R.bias_act_forward(x, b, activation)
    dz, db = R.bias_act_backward(dy, y, activation, True)
    check_grad(lambda x_: np.sum(R.bias_act_forward(x_, b, activation) * dy), x, dz, name="x")
    check_grad(lambda b_: np.sum(R.bias_act_forward(x, b_, activation) * dy), b, db, name="b")
    assert R.bias_act_backward(dy, y, activation, False)[1] is None


def test_dense_gradients():
    x, w, b, dy = randn(3, 4), randn(4, 5), randn(5), randn(3, 5)
    dx, dw, db = R.dense_backward(dy, x, w)
    check_grad(lambda x_: np.sum(R.dense_forward(x_, w, b) * dy), x, dx, name="x")
    check_grad(lambda w_: np.sum(R.dense_forward(x, w_, b) * dy), w, dw, name="w")
    check_grad(lambda b_: np.sum(R.dense_forward(x, w, b_) * dy), b, db, name="b")


def test_softmax_and_cross_entropy_gradients():
    x, dy = randn(3, 5) * 3, randn(3, 5)
    y = R.softmax_forward(x)
    check_grad(lambda x_: np.sum(R.softmax_forward(x_) * dy), x, R.softmax_backward(dy, y))
    labels, dloss = np.array([4, 0, 2]), randn(3)
    _, probs = R.softmax_cross_entropy_forward(x, labels)
    check_grad(lambda x_: np.sum(R.softmax_cross_entropy_forward(x_, labels)[0] * dloss), x,
               R.softmax_cross_entropy_backward(probs, labels, dloss), name="logits")


def test_gradcheck_catches_wrong_gradients_and_skips_kinks():
    x = np.array([-1.0, 0.0, 2.0])
    relu_sum = lambda x_: np.sum(np.maximum(x_, 0))   # noqa: E731
    np.testing.assert_allclose(numeric_grad(lambda x_: np.sum(x_ ** 3), x), 3 * x ** 2, rtol=1e-8)
    with pytest.raises(AssertionError, match="gradient of x"):
        check_grad(lambda x_: np.sum(x_ ** 3), x, 3 * x ** 2 + np.array([0, 0, 1e-3]))
    with pytest.raises(AssertionError):           # the kink at 0 fails unless skipped
        check_grad(relu_sum, x, np.array([0.0, 1.0, 1.0]))
    assert check_grad(relu_sum, x, np.array([0.0, 1.0, 1.0]), skip_kinks=True) == 1


# ---------------------------------------------------------------- float32 path

def _f32_calls():
    """(name, call taking a dtype) for every kernel; each call returns an array or a tuple."""
    x, w, b = randn(2, 5, 5, 4), randn(3, 3, 2, 6), randn(6)
    conv = ((1, 2), (1, 1, 1, 1), (1, 1), 2)
    dy = randn(2, 5, 3, 6)
    pool = ((3, 3), (2, 2), (1, 1, 1, 1))
    pdy = randn(2, 3, 3, 4)
    xd, wd, dyd = randn(3, 4), randn(4, 5), randn(3, 5)
    logits, labels = randn(3, 5), np.array([0, 4, 2])
    c = lambda a, dt: a.astype(dt)   # noqa: E731
    return [
        ("conv2d_forward", lambda dt: R.conv2d_forward(c(x, dt), c(w, dt), c(b, dt), *conv)),
        ("conv2d_backward_data", lambda dt: R.conv2d_backward_data(c(dy, dt), c(w, dt), x.shape, *conv)),
        ("conv2d_backward_weights", lambda dt: R.conv2d_backward_weights(c(dy, dt), c(x, dt), w.shape, *conv, True)),
        ("dense_forward", lambda dt: R.dense_forward(c(xd, dt), c(wd, dt), c(wd[0], dt))),
        ("dense_backward", lambda dt: R.dense_backward(c(dyd, dt), c(xd, dt), c(wd, dt))),
        ("max_pool2d_forward", lambda dt: R.max_pool2d_forward(c(x, dt), *pool)),
        ("max_pool2d_backward", lambda dt: R.max_pool2d_backward(c(pdy, dt), c(x, dt), *pool)),
        ("avg_pool2d_forward", lambda dt: R.avg_pool2d_forward(c(x, dt), *pool)),
        ("avg_pool2d_backward", lambda dt: R.avg_pool2d_backward(c(pdy, dt), x.shape, *pool)),
        ("global_avg_pool2d_forward", lambda dt: R.global_avg_pool2d_forward(c(x, dt))),
        ("global_avg_pool2d_backward", lambda dt: R.global_avg_pool2d_backward(c(x[:, 0, 0], dt), x.shape)),
        ("batch_norm_forward_train", lambda dt: R.batch_norm_forward_train(c(x, dt), c(b[:4], dt), c(b[2:], dt), 1e-3)),
        ("batch_norm_forward_inference", lambda dt: R.batch_norm_forward_inference(
            c(x, dt), c(b[:4], dt), c(b[2:], dt), c(b[1:5], dt), c(np.abs(b[:4]), dt), 1e-3)),
        ("batch_norm_backward", lambda dt: R.batch_norm_backward(
            c(pdy, dt), c(pdy * 2, dt), c(b[:4], dt), c(b[2:], dt), c(np.abs(b[:4]), dt))),
        *[(f"bias_act_forward_{a}", lambda dt, a=a: R.bias_act_forward(c(x, dt), c(b[:4], dt), a))
          for a in ("linear", "relu", "sigmoid", "tanh")],
        *[(f"bias_act_backward_{a}", lambda dt, a=a: R.bias_act_backward(c(x, dt), c(np.tanh(x), dt), a, True))
          for a in ("linear", "relu", "sigmoid", "tanh")],
        ("softmax_forward", lambda dt: R.softmax_forward(c(logits, dt))),
        ("softmax_backward", lambda dt: R.softmax_backward(c(logits, dt), c(np.abs(logits), dt))),
        ("softmax_cross_entropy_forward", lambda dt: R.softmax_cross_entropy_forward(c(logits, dt), labels)),
        ("softmax_cross_entropy_backward", lambda dt: R.softmax_cross_entropy_backward(
            c(np.abs(logits), dt), labels, c(logits[:, 0], dt))),
    ]


@pytest.mark.parametrize("name,call", _f32_calls(), ids=[n for n, _ in _f32_calls()])
def test_float32_keeps_dtype_and_matches_float64(name, call):
    out32, out64 = call(np.float32), call(np.float64)
    out32 = out32 if isinstance(out32, tuple) else (out32,)
    out64 = out64 if isinstance(out64, tuple) else (out64,)
    for a32, a64 in zip(out32, out64):
        assert a32.dtype == np.float32 and a64.dtype == np.float64, name
        assert a32.flags.c_contiguous
        np.testing.assert_allclose(a32, a64, rtol=1e-4, atol=1e-5, err_msg=name)


# ---------------------------------------------------------------- numerical stability

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_stable_for_huge_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [-1e4, -1e4, -1e4]], dtype)
    loss, probs = R.softmax_cross_entropy_forward(logits, np.array([0, 2, 1]))
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(loss, [0.0, 1e4 + np.log(2.0), np.log(3.0)], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(probs, [[1, 0, 0], [0.5, 0.5, 0], [1 / 3] * 3], atol=1e-7)
    np.testing.assert_allclose(R.softmax_forward(logits), probs, atol=1e-7)
    # sigmoid of huge inputs saturates without overflow warnings
    with np.errstate(over="raise"):
        np.testing.assert_array_equal(R.bias_act_forward(logits, None, "sigmoid")[0], [1, 0.5, 0])


# ---------------------------------------------------------------- input validation

CONV_OK = ((1, 1), (0, 0, 0, 0), (1, 1), 1)


@pytest.mark.parametrize("call,match", [
    (lambda: R.conv2d_forward(randn(1, 4, 4, 3), randn(3, 3, 2, 4), None, *CONV_OK), "channel mismatch"),
    (lambda: R.conv2d_forward(randn(1, 4, 4, 4), randn(3, 3, 2, 3), None, (1, 1), (0,) * 4, (1, 1), 2),
     "groups=2 must divide"),
    (lambda: R.conv2d_forward(randn(1, 4, 4, 3), randn(3, 3, 3, 4), None, (1, 1), (0,) * 4, (2, 2), 1),
     "larger than the padded input"),
    (lambda: R.conv2d_forward(randn(1, 4, 4, 3), randn(3, 3, 3, 4), randn(3), *CONV_OK), "b must have shape"),
    (lambda: R.conv2d_forward(randn(1, 4, 4, 3), randn(3, 3, 3, 4), None, (1, 1), (0, 0), (1, 1), 1), "pads"),
    (lambda: R.conv2d_forward(randn(1, 4, 4, 3), randn(3, 3, 3, 4), None, (0, 1), (0,) * 4, (1, 1), 1),
     "strides must be >= 1"),
    (lambda: R.conv2d_forward(randn(4, 4, 3), randn(3, 3, 3, 4), None, *CONV_OK), "x must be 4-D"),
    (lambda: R.conv2d_backward_data(randn(1, 3, 3, 4), randn(3, 3, 3, 4), (1, 4, 4, 3), *CONV_OK),
     r"dy must have shape \(1, 2, 2, 4\)"),
    (lambda: R.conv2d_backward_weights(randn(1, 2, 2, 5), randn(1, 4, 4, 3), (3, 3, 3, 4), *CONV_OK, True),
     "dy must have shape"),
    (lambda: R.max_pool2d_forward(randn(1, 4, 4, 1), (2, 2), (1, 1), (2, 0, 0, 0)), "smaller than the pool size"),
    (lambda: R.avg_pool2d_forward(randn(1, 2, 2, 1), (3, 3), (1, 1), (0, 0, 0, 0)), "larger than the padded input"),
    (lambda: R.max_pool2d_backward(randn(1, 3, 3, 1), randn(1, 4, 4, 1), (2, 2), (2, 2), (0,) * 4), "dy must"),
    (lambda: R.dense_forward(randn(2, 3), randn(4, 5), None), "dense: w must have shape"),
    (lambda: R.batch_norm_forward_train(randn(4, 3), randn(2), randn(3), 1e-3), "gamma must have shape"),
    (lambda: R.batch_norm_backward(randn(4, 3), randn(4, 2), randn(3), randn(3), randn(3)), "x must have shape"),
    (lambda: R.bias_act_forward(randn(2, 3), None, "gelu"), "activation must be one of"),
    (lambda: R.bias_act_backward(randn(2, 3), randn(3, 2), "relu", True), "y must have shape"),
    (lambda: R.softmax_forward(randn(2, 3, 4)), "x must be 2-D"),
    (lambda: R.softmax_cross_entropy_forward(randn(2, 3), np.array([0, 3])), r"labels must be in \[0, 3\)"),
    (lambda: R.softmax_cross_entropy_forward(randn(2, 3), np.array([0])), "labels must have shape"),
    (lambda: R.softmax_cross_entropy_backward(randn(2, 3), np.array([0, 1]), randn(3)), "dloss must have shape"),
])
def test_bad_shapes_raise_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        R.conv2d_forward(np.ones((1, 2, 2, 1), np.int64), randn(1, 1, 1, 1), None, *CONV_OK)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        R.softmax_forward([[1.0, 2.0]])
    with pytest.raises(TypeError, match="labels must be a numpy.ndarray of int64"):
        R.softmax_cross_entropy_forward(randn(2, 3), np.array([0.0, 1.0]))


# ---------------------------------------------------------------- PyTorch cross-check (optional)

def _tf_same(size, k, s, d):
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("x_shape,w_shape,strides,dilation,groups", [
    ((2, 8, 7, 4), (2, 2, 4, 6), (2, 2), (1, 1), 1),   # even kernel, even strides: extra pad at the end
    ((1, 9, 10, 6), (4, 3, 2, 6), (2, 3), (1, 1), 3),  # grouped
    ((2, 7, 7, 4), (3, 2, 1, 8), (1, 2), (2, 2), 4),   # depthwise, dilated
])
def test_conv_same_padding_matches_torch(x_shape, w_shape, strides, dilation, groups):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = randn(*x_shape), randn(*w_shape), randn(w_shape[3])
    t, bo = _tf_same(x_shape[1], w_shape[0], strides[0], dilation[0])
    le, r = _tf_same(x_shape[2], w_shape[1], strides[1], dilation[1])
    pads = (t, bo, le, r)
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tw = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)    # HWIO -> OIHW
    tb = torch.tensor(b, requires_grad=True)
    ty = F.conv2d(F.pad(tx, (le, r, t, bo)), tw, tb, stride=strides, dilation=dilation, groups=groups)
    y = R.conv2d_forward(x, w, b, strides, pads, dilation, groups)
    assert y.shape[1:3] == (-(-x_shape[1] // strides[0]), -(-x_shape[2] // strides[1]))
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    dy = randn(*y.shape)
    ty.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    dx = R.conv2d_backward_data(dy, w, x.shape, strides, pads, dilation, groups)
    dw, db = R.conv2d_backward_weights(dy, x, w.shape, strides, pads, dilation, groups, True)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, tw.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pool,strides,pad", [((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (1, 0)),
                                              ((2, 2), (2, 2), (0, 0))])
def test_pools_match_torch(pool, strides, pad):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = distinct(2, 7, 6, 3)   # distinct: no tie-breaking differences
    pads = (pad[0], pad[0], pad[1], pad[1])    # torch pads symmetrically
    dy = randn(*R.max_pool2d_forward(x, pool, strides, pads).shape)
    tdy = torch.tensor(dy.transpose(0, 3, 1, 2))
    for name, ours, theirs in [
        ("max", (R.max_pool2d_forward, lambda: R.max_pool2d_backward(dy, x, pool, strides, pads)),
         lambda t: F.max_pool2d(t, pool, strides, pad)),
        ("avg", (R.avg_pool2d_forward, lambda: R.avg_pool2d_backward(dy, x.shape, pool, strides, pads)),
         lambda t: F.avg_pool2d(t, pool, strides, pad, count_include_pad=False)),
    ]:
        tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        ty = theirs(tx)
        ty.backward(tdy)
        np.testing.assert_allclose(ours[0](x, pool, strides, pads), ty.detach().numpy().transpose(0, 2, 3, 1),
                                   rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(ours[1](), tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, err_msg=name)
