"""Native pooling, batch-norm, bias+activation and softmax kernels (fastconv._C) against the
NumPy oracle (fastconv.reference) run in float64 on the same float32 inputs.

Tolerances: pools and elementwise ops rtol 1e-5 (max pool forward exact); batch norm 1e-4.
Outputs that come from cancelling sums (batch-norm dx, softmax dx) are compared with an
absolute floor of rtol * max|reference|, the scale at which float32 rounding shows.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import fastconv
from fastconv import _C
from fastconv import reference as R
from threads_used import threads_used

import seeds

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def _per_test_RNG(request):
    # Each test draws from its own generator, seeded by its name, so it sees the same numbers
    # run alone (-k) or in the full suite. (Parameters drawn at import come from RNG as seeded
    # above: import order is fixed, so they reproduce too.)
    global RNG
    RNG = seeds.per_test_rng(request)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def f64(a):
    return None if a is None else np.asarray(a, np.float64)


def close(actual, expected, rtol, floor=True, scale=None):
    """assert_allclose with atol = rtol * max|expected| when floor (cancellation-prone outputs);
    `scale` overrides max|expected| when the terms that cancel are known to be larger."""
    expected = np.asarray(expected)
    if scale is None:
        scale = float(np.abs(expected).max(initial=0.0))
    atol = rtol * scale if floor else 0.0
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=max(atol, 1e-30))


def on_threads(kernel, *args):
    """kernel(*args), checking that it ran on more than one thread (tests of the threaded paths)."""
    with threads_used() as used:
        out = kernel(*args)
    assert used.count >= 2, (kernel.__name__, used.count)
    return out


# ---------------------------------------------------------------- pooling

def same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


@st.composite
def pool_cases(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    # > 16 with n < 4 splits channels into blocks; 16/64-channel vectors plus remainders
    c = draw(st.sampled_from([1, 3, 8, 16, 17, 40, 64, 81]))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 5)), draw(st.integers(1, 5))  # stride may exceed the pool
    mode = draw(st.sampled_from(["valid", "same", "after+1", "random"]))
    if mode == "valid":
        pads = (0, 0, 0, 0)
    elif mode == "same":
        pads = same_pads(h, kh, sh) + same_pads(w, kw, sw)
    elif mode == "after+1":  # 'same'-style asymmetry: pad_after = pad_before + 1
        pt, pl = draw(st.integers(0, max(kh - 2, 0))), draw(st.integers(0, max(kw - 2, 0)))
        pads = (pt, min(pt + 1, kh - 1), pl, min(pl + 1, kw - 1))
    else:
        pads = tuple(draw(st.integers(0, k - 1)) for k in (kh, kh, kw, kw))
    assume(h + pads[0] + pads[1] >= kh and w + pads[2] + pads[3] >= kw)
    ties = draw(st.booleans())  # small integers: many equal maxima in one window
    shape = (n, h, w, c)
    x = (RNG.integers(-2, 3, shape) if ties else RNG.standard_normal(shape)).astype(np.float32)
    return x, (kh, kw), (sh, sw), pads


@given(pool_cases())
def test_max_pool_matches_oracle(case):
    x, pool, strides, pads = case
    y = _C.max_pool2d_forward(x, pool, strides, pads)
    np.testing.assert_array_equal(y, R.max_pool2d_forward(x, pool, strides, pads))
    dy = randn(*y.shape)
    dx = _C.max_pool2d_backward(dy, x, pool, strides, pads)
    close(dx, R.max_pool2d_backward(f64(dy), f64(x), pool, strides, pads), 1e-5)


@given(pool_cases())
def test_max_pool_argmax_matches_oracle(case):
    x, pool, strides, pads = case
    y, arg = _C.max_pool2d_forward_with_argmax(x, pool, strides, pads)
    ry, rarg = R.max_pool2d_forward_with_argmax(x, pool, strides, pads)
    np.testing.assert_array_equal(y, ry)
    assert arg.dtype == np.uint8 and arg.shape == y.shape
    np.testing.assert_array_equal(arg, rarg)
    dy = randn(*y.shape)
    dx = _C.max_pool2d_backward_argmax(dy, arg, x.shape, pool, strides, pads)
    close(dx, R.max_pool2d_backward_argmax(f64(dy), arg, x.shape, pool, strides, pads), 1e-5)
    # the same cells as the backward that recomputes the winners from x
    close(dx, R.max_pool2d_backward(f64(dy), f64(x), pool, strides, pads), 1e-5)


def test_max_pool_argmax_large_window_and_batch_one():
    x = randn(1, 17, 17, 5)
    y, arg = _C.max_pool2d_forward_with_argmax(x, (16, 16), (1, 1), (0, 0, 0, 0))  # 256 cells
    np.testing.assert_array_equal(arg, R.max_pool2d_forward_with_argmax(x, (16, 16), (1, 1), (0, 0, 0, 0))[1])
    with pytest.raises(ValueError, match="at most 256 cells"):
        _C.max_pool2d_forward_with_argmax(x, (16, 17), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match="at most 256 cells"):
        _C.max_pool2d_backward_argmax(y[:, :1], arg[:, :1], x.shape, (17, 16), (1, 1), (0, 0, 0, 0))


@given(pool_cases())
def test_avg_pool_matches_oracle(case):
    x, pool, strides, pads = case
    y = _C.avg_pool2d_forward(x, pool, strides, pads)
    close(y, R.avg_pool2d_forward(f64(x), pool, strides, pads), 1e-5)
    dy = randn(*y.shape)
    dx = _C.avg_pool2d_backward(dy, x.shape, pool, strides, pads)
    close(dx, R.avg_pool2d_backward(f64(dy), x.shape, pool, strides, pads), 1e-5)


def test_max_pool_padding_never_wins_and_ties_go_first():
    x = np.full((1, 2, 2, 1), -5.0, np.float32)  # every real cell below the implicit pad 0
    y = _C.max_pool2d_forward(x, (3, 3), (1, 1), (1, 1, 1, 1))
    assert (y == -5.0).all()
    dx = _C.max_pool2d_backward(np.ones_like(y), x, (3, 3), (1, 1), (1, 1, 1, 1))
    # All four windows cover the whole image, all tie: each routes to cell (0, 0).
    np.testing.assert_array_equal(dx[0, :, :, 0], [[4, 0], [0, 0]])


def test_pool_1x1_is_identity_and_global_pool_is_full_window():
    x = randn(2, 5, 7, 3)
    np.testing.assert_array_equal(_C.max_pool2d_forward(x, (1, 1), (1, 1), (0, 0, 0, 0)), x)
    np.testing.assert_array_equal(_C.avg_pool2d_forward(x, (1, 1), (1, 1), (0, 0, 0, 0)), x)
    g = _C.avg_pool2d_forward(x, (5, 7), (1, 1), (0, 0, 0, 0))
    close(g.reshape(2, 3), f64(x).mean(axis=(1, 2)), 1e-5)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 7, 5, 3), (3, 4, 4, 40), (2, 112, 3, 17)])
def test_global_avg_pool_matches_oracle(shape):
    x = randn(*shape) + 3.0
    close(_C.global_avg_pool2d_forward(x), R.global_avg_pool2d_forward(f64(x)), 1e-5)
    dy = randn(shape[0], shape[3])
    close(_C.global_avg_pool2d_backward(dy, shape), R.global_avg_pool2d_backward(f64(dy), shape), 1e-5)


def test_pool_results_do_not_depend_on_thread_count():
    # Large enough (> kTeamGrain elements) that the kernels really use several threads.
    x = RNG.integers(-3, 4, (3, 65, 65, 40)).astype(np.float32)
    dy = randn(3, 33, 33, 40)
    args = ((3, 3), (2, 2), (1, 1, 1, 1))
    old = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        one = _C.max_pool2d_backward(dy, x, *args), _C.avg_pool2d_backward(dy, x.shape, *args)
        fastconv.set_num_threads(4)
        four = (on_threads(_C.max_pool2d_backward, dy, x, *args),
                on_threads(_C.avg_pool2d_backward, dy, x.shape, *args))
    finally:
        fastconv.set_num_threads(old)
    for a, b in zip(one, four):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- batch normalisation

@given(st.sampled_from([2, 4]), st.integers(1, 4), st.integers(1, 6), st.integers(1, 19),
       st.floats(1e-5, 1e-2), st.sampled_from([0.0, 50.0]))
def test_batch_norm_matches_oracle(rank, n, hw, c, eps, offset):
    shape = (n * hw, c) if rank == 2 else (n, hw, hw + 1, c)
    x = randn(*shape) * 2.0 + np.float32(offset)
    gamma, beta = randn(c), randn(c)
    y, mean, var, inv_std = _C.batch_norm_forward_train(x, gamma, beta, eps)
    ry, rmean, rvar, rinv = R.batch_norm_forward_train(f64(x), f64(gamma), f64(beta), eps)
    close(mean, rmean, 1e-5)
    close(var, rvar, 1e-4)
    close(inv_std, rinv, 1e-4, floor=False)
    close(y, ry, 1e-4)
    yi = _C.batch_norm_forward_inference(x, gamma, beta, mean, var, eps)
    close(yi, R.batch_norm_forward_inference(f64(x), f64(gamma), f64(beta), f64(mean), f64(var), eps), 1e-4)
    dy = randn(*shape)
    dx, dgamma, dbeta = _C.batch_norm_backward(dy, x, gamma, mean, inv_std)
    rdx, rdgamma, rdbeta = R.batch_norm_backward(f64(dy), f64(x), f64(gamma), f64(mean), f64(inv_std))
    # dx = gamma*inv_std*(dy - mean(dy) - xhat*mean(dy*xhat)) can cancel to ~0 (e.g. m == 2):
    # judge it on the scale of its terms.
    close(dx, rdx, 1e-4, scale=float(np.abs(f64(dy) * f64(gamma * inv_std)).max()))
    close(dgamma, rdgamma, 1e-4)
    close(dbeta, rdbeta, 1e-4)


def test_batch_norm_large_offset_does_not_cancel():
    # mean 1000, std 0.1: a float32 E[x^2] - E[x]^2 would lose the variance entirely.
    x = (1000.0 + 0.1 * RNG.standard_normal((4096, 3))).astype(np.float32)
    _, mean, var, _ = _C.batch_norm_forward_train(x, np.ones(3, np.float32), np.zeros(3, np.float32), 1e-3)
    np.testing.assert_allclose(var, f64(x).var(axis=0), rtol=1e-4)
    np.testing.assert_allclose(mean, f64(x).mean(axis=0), rtol=1e-6)


# ---------------------------------------------------------------- bias + activation

@given(st.sampled_from(["linear", "relu", "sigmoid", "tanh"]), st.booleans(),
       st.lists(st.integers(1, 5), min_size=1, max_size=4), st.floats(0.1, 30.0))
def test_bias_act_matches_oracle(act, with_bias, shape, scale):
    x = randn(*shape) * np.float32(scale)
    b = randn(shape[-1]) if with_bias else None
    y = _C.bias_act_forward(x, b, act)
    close(y, R.bias_act_forward(f64(x), f64(b), act), 1e-5, floor=False if act == "linear" else True)
    dy = randn(*shape)
    dz, db = _C.bias_act_backward(dy, y, act, with_bias)
    rdz, rdb = R.bias_act_backward(f64(dy), f64(y), act, with_bias)
    # tanh's dy*(1 - y*y) cancels where |y| is near 1: without FMA (the baseline level) y*y is
    # rounded before the subtraction, an absolute error of ~1.2e-7 * |dy| (seen: 5e-8 on an
    # element of 6e-4). Judge those elements on the scale of dy, 10x above that rounding.
    atol = 1e-6 * float(np.abs(f64(dy)).max()) if act in ("tanh", "sigmoid") else 0.0
    np.testing.assert_allclose(dz, rdz, rtol=1e-5, atol=max(atol, 1e-30))
    assert dz.dtype == np.float32
    if with_bias:  # db sums dz over the rows, and their rounding errors with it
        rows = int(np.prod(shape[:-1]))
        np.testing.assert_allclose(db, rdb, rtol=1e-5, atol=max(rows * atol, 1e-5 * float(np.abs(rdb).max())))
    else:
        assert db is None


def test_bias_act_large_inputs_stay_finite():
    x = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], np.float32)
    np.testing.assert_array_equal(_C.bias_act_forward(x, None, "sigmoid"), [[0, 0, 0.5, 1, 1]])
    np.testing.assert_array_equal(_C.bias_act_forward(x, None, "tanh"), [[-1, -1, 0, 1, 1]])


# ---------------------------------------------------------------- softmax and cross-entropy

@given(st.integers(1, 9), st.integers(1, 30), st.sampled_from([1.0, 30.0, 1e4]))
def test_softmax_and_cross_entropy_match_oracle(n, c, scale):
    x = randn(n, c) * np.float32(scale)
    y = _C.softmax_forward(x)
    close(y, R.softmax_forward(f64(x)), 1e-5)
    dy = randn(n, c)
    # y * (dy - sum(dy*y)) cancels when y is one-hot-like: judge it on the scale of |y*dy|.
    close(_C.softmax_backward(dy, y), R.softmax_backward(f64(dy), f64(y)), 1e-5,
          scale=float(np.abs(f64(dy)).max() * np.abs(f64(y)).max()))
    labels = RNG.integers(0, c, n)
    loss, probs = _C.softmax_cross_entropy_forward(x, labels)
    rloss, rprobs = R.softmax_cross_entropy_forward(f64(x), labels)
    assert np.isfinite(loss).all()
    np.testing.assert_allclose(loss, rloss, rtol=1e-5, atol=1e-6)
    close(probs, rprobs, 1e-5)
    dloss = randn(n)
    close(_C.softmax_cross_entropy_backward(probs, labels, dloss),
          R.softmax_cross_entropy_backward(f64(probs), labels, f64(dloss)), 1e-5,
          scale=float(np.abs(dloss).max()))


def test_cross_entropy_hand_worked():
    logits = np.array([[0.0, math.log(3.0)], [1e4, -1e4]], np.float32)
    loss, probs = _C.softmax_cross_entropy_forward(logits, np.array([0, 1]))
    np.testing.assert_allclose(loss, [math.log(4.0), 2e4], rtol=1e-6)
    np.testing.assert_allclose(probs, [[0.25, 0.75], [1.0, 0.0]], rtol=1e-6)


# ---------------------------------------------------------------- empty batches

def test_empty_batch_gives_empty_outputs():
    x = np.zeros((0, 6, 6, 3), np.float32)
    args = ((2, 2), (2, 2), (0, 0, 0, 0))
    assert _C.max_pool2d_forward(x, *args).shape == (0, 3, 3, 3)
    assert _C.max_pool2d_backward(np.zeros((0, 3, 3, 3), np.float32), x, *args).shape == x.shape
    assert _C.avg_pool2d_forward(x, *args).shape == (0, 3, 3, 3)
    assert _C.avg_pool2d_backward(np.zeros((0, 3, 3, 3), np.float32), x.shape, *args).shape == x.shape
    assert _C.global_avg_pool2d_forward(x).shape == (0, 3)
    assert _C.global_avg_pool2d_backward(np.zeros((0, 3), np.float32), x.shape).shape == x.shape
    assert _C.bias_act_forward(x, np.ones(3, np.float32), "relu").shape == x.shape
    dz, db = _C.bias_act_backward(x, x, "relu", True)
    assert dz.shape == x.shape and (db == 0).all() and db.shape == (3,)
    assert _C.softmax_forward(np.zeros((0, 4), np.float32)).shape == (0, 4)
    loss, probs = _C.softmax_cross_entropy_forward(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert loss.shape == (0,) and probs.shape == (0, 4)
    assert _C.batch_norm_forward_inference(x, *[np.ones(3, np.float32)] * 4, 1e-3).shape == x.shape
    with pytest.raises(ValueError, match="empty batch"):
        _C.batch_norm_forward_train(x, np.ones(3, np.float32), np.zeros(3, np.float32), 1e-3)


# ---------------------------------------------------------------- binding errors

X = np.zeros((2, 6, 6, 3), np.float32)
POOL = ((2, 2), (2, 2), (0, 0, 0, 0))
ONES3 = np.ones(3, np.float32)


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda: _C.max_pool2d_forward(X.astype(np.float64), *POOL), TypeError, "x must have dtype float32"),
    (lambda: _C.avg_pool2d_forward(X[:, ::2], *POOL), TypeError, "x must be C-contiguous"),
    (lambda: _C.max_pool2d_forward(X[0], *POOL), ValueError, r"x must be 4-D"),
    (lambda: _C.max_pool2d_forward(X, (2, 2), (2, 2), (2, 0, 0, 0)), ValueError, "smaller than the pool"),
    (lambda: _C.max_pool2d_forward(X, (2, 2), (2, 2), (0, 0, 0)), ValueError, "pads must be a tuple of 4"),
    (lambda: _C.max_pool2d_forward(X, (2, 2), (0, 2), (0, 0, 0, 0)), ValueError, "strides must be >= 1"),
    (lambda: _C.max_pool2d_forward(X, (7, 2), (1, 1), (0, 0, 0, 0)), ValueError, "larger than the padded"),
    (lambda: _C.max_pool2d_backward(np.zeros((2, 2, 3, 3), np.float32), X, *POOL), ValueError,
     r"dy must have shape \(2, 3, 3, 3\), got \(2, 2, 3, 3\)"),
    (lambda: _C.avg_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), (2, 6, 6), *POOL), ValueError,
     "x_shape must be a tuple of 4"),
    (lambda: _C.global_avg_pool2d_backward(np.zeros((2, 4), np.float32), X.shape), ValueError,
     r"dy must have shape \(2, 3\)"),
    (lambda: _C.batch_norm_forward_train(np.zeros(3, np.float32), ONES3, ONES3, 1e-3), ValueError,
     "x must be at least 2-D"),
    (lambda: _C.batch_norm_forward_train(X, np.ones(4, np.float32), ONES3, 1e-3), ValueError,
     r"gamma must have shape \(3,\)"),
    (lambda: _C.batch_norm_forward_inference(X, ONES3, ONES3, ONES3, ONES3.astype(np.float64), 1e-3),
     TypeError, "var must have dtype float32"),
    (lambda: _C.batch_norm_backward(X[:1], X, ONES3, ONES3, ONES3), ValueError, "dy must have shape"),
    (lambda: _C.bias_act_forward(X, ONES3, "gelu"), ValueError, "'linear', 'relu', 'sigmoid', 'tanh'"),
    (lambda: _C.bias_act_forward(X, ONES3, None), TypeError, "activation must be a str"),
    (lambda: _C.bias_act_forward(X, np.ones(2, np.float32), "relu"), ValueError, r"b must have shape \(3,\)"),
    (lambda: _C.bias_act_backward(X, X[:1], "relu", True), ValueError, "dy must have shape"),
    (lambda: _C.softmax_forward(X), ValueError, "x must be 2-D"),
    (lambda: _C.softmax_forward(np.zeros((2, 3))), TypeError, "x must have dtype float32"),
    (lambda: _C.softmax_cross_entropy_forward(np.zeros((2, 3), np.float32), np.array([0, 3])), ValueError,
     r"labels must be in \[0, 3\).*labels\[1\] = 3"),
    (lambda: _C.softmax_cross_entropy_forward(np.zeros((2, 3), np.float32), np.array([-1, 0])), ValueError,
     r"labels must be in \[0, 3\)"),
    (lambda: _C.softmax_cross_entropy_forward(np.zeros((2, 3), np.float32), np.array([0.0, 1.0])), TypeError,
     "labels must have dtype int64"),
    (lambda: _C.softmax_cross_entropy_backward(np.zeros((2, 3), np.float32), np.array([0, 5]),
                                               np.ones(2, np.float32)), ValueError, r"labels must be in \[0, 3\)"),
    (lambda: _C.softmax_cross_entropy_backward(np.zeros((2, 3), np.float32), np.array([0, 1]),
                                               np.ones(3, np.float32)), ValueError, r"dloss must have shape \(2,\)"),
])
def test_binding_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


ARG = np.zeros((2, 3, 3, 3), np.uint8)


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda: _C.max_pool2d_backward_argmax(np.zeros((2, 3, 3, 3), np.float32), ARG.astype(np.int32), X.shape,
                                           *POOL), TypeError, "argmax must have dtype uint8"),
    (lambda: _C.max_pool2d_backward_argmax(np.zeros((2, 3, 3, 3), np.float32), ARG[:1], X.shape, *POOL),
     ValueError, r"argmax must have shape \(2, 3, 3, 3\)"),
    (lambda: _C.max_pool2d_backward_argmax(np.zeros((2, 3, 3, 3), np.float32), ARG[:, ::2], X.shape, *POOL),
     TypeError, "argmax must be C-contiguous"),
    (lambda: _C.max_pool2d_backward_argmax(np.zeros((2, 2, 3, 3), np.float32), ARG, X.shape, *POOL),
     ValueError, "dy must have shape"),
    (lambda: _C.max_pool2d_backward_argmax(np.zeros((2, 3, 3, 3), np.float32), ARG, (2, 6, 6), *POOL),
     ValueError, "x_shape must be a tuple of 4"),
    (lambda: _C.max_pool2d_forward_with_argmax(X.astype(np.float64), *POOL), TypeError,
     "x must have dtype float32"),
    (lambda: _C.set_stream_threshold(-1), ValueError, "bytes must be >= 0"),
])
def test_argmax_binding_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_sigmoid_relative_accuracy_over_the_float_range():
    # Exercises the vectorised exp (csrc/cpu/fast_exp.h) at every binade down to ~1e-35.
    z = np.linspace(-80, 80, 200001, dtype=np.float32)[None, :]
    y = _C.bias_act_forward(z, None, "sigmoid")
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-f64(z))), rtol=1e-6, atol=0)
    p = _C.softmax_forward(np.stack([np.zeros_like(z[0]), z[0]], axis=1))[:, 1]
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-f64(z[0]))), rtol=1e-6, atol=0)


def test_batch_norm_none_gamma_beta_mean_scale_one_shift_zero():
    x = randn(6, 4)
    ones, zeros = np.ones(4, np.float32), np.zeros(4, np.float32)
    with_params = _C.batch_norm_forward_train(x, ones, zeros, 1e-3)
    without = _C.batch_norm_forward_train(x, None, None, 1e-3)
    for a, b in zip(with_params, without):
        np.testing.assert_array_equal(a, b)


def test_threads_used_hook():
    # 0: no parallel region ran since the last read; 1: only serial ones (below kParallelGrain).
    old = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(2)
        _C._threads_used()
        assert _C._threads_used() == 0
        _C.softmax_forward(randn(4, 10))
        assert _C._threads_used() == 1
        _C.softmax_forward(randn(64, 1000))
        _C.softmax_forward(randn(4, 10))  # the most threads since the last read, not the last call's
        assert _C._threads_used() == 2
    finally:
        fastconv.set_num_threads(old)


def test_multithreaded_paths_match_oracle():
    # Sizes above kParallelGrain, so the per-thread partial sums of column_reduce and the
    # parallel row loops run (hypothesis's small shapes stay on one thread).
    old = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(3)  # uneven row split
        x = randn(4, 30, 30, 16) + np.float32(2.0)
        gamma, beta = randn(16), randn(16)
        y, mean, var, inv_std = on_threads(_C.batch_norm_forward_train, x, gamma, beta, 1e-3)
        ry, rmean, rvar, _ = R.batch_norm_forward_train(f64(x), f64(gamma), f64(beta), 1e-3)
        close(mean, rmean, 1e-5)
        close(var, rvar, 1e-4)
        close(y, ry, 1e-4)
        dy = randn(*x.shape)
        dx, dgamma, dbeta = on_threads(_C.batch_norm_backward, dy, x, gamma, mean, inv_std)
        rdx, rdgamma, rdbeta = R.batch_norm_backward(f64(dy), f64(x), f64(gamma), f64(mean), f64(inv_std))
        close(dx, rdx, 1e-4, scale=float(np.abs(f64(dy) * f64(gamma * inv_std)).max()))
        close(dgamma, rdgamma, 1e-4)
        close(dbeta, rdbeta, 1e-4)
        ya = on_threads(_C.bias_act_forward, x, beta, "tanh")
        close(ya, R.bias_act_forward(f64(x), f64(beta), "tanh"), 1e-5)
        dz, db = on_threads(_C.bias_act_backward, dy, ya, "tanh", True)
        rdz, rdb = R.bias_act_backward(f64(dy), f64(ya), "tanh", True)
        close(dz, rdz, 1e-5)
        close(db, rdb, 1e-5)
        logits = randn(64, 1000) * np.float32(5)
        labels = RNG.integers(0, 1000, 64)
        loss, probs = on_threads(_C.softmax_cross_entropy_forward, logits, labels)
        rloss, rprobs = R.softmax_cross_entropy_forward(f64(logits), labels)
        np.testing.assert_allclose(loss, rloss, rtol=1e-5)
        close(probs, rprobs, 1e-5)
    finally:
        fastconv.set_num_threads(old)


def test_blas_coretype_override_respects_the_environment(monkeypatch):
    from fastconv import _loader
    monkeypatch.setattr(_loader, "_cpu_flags", lambda: {"avx2", *_loader._AVX512_FLAGS})
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.delenv("FASTCONV_ISA", raising=False)  # CI reruns this file with it set
    assert _loader.blas_coretype_override() == "SKYLAKEX"
    monkeypatch.setenv("FASTCONV_ISA", "avx2")  # a forced lower level gets that CPU's kernels
    assert _loader.blas_coretype_override() == "HASWELL"
    monkeypatch.setenv("FASTCONV_ISA", "baseline")
    assert _loader.blas_coretype_override() == "NEHALEM"
    monkeypatch.delenv("FASTCONV_ISA")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")  # a site's own choice wins
    assert _loader.blas_coretype_override() is None
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.setattr(_loader, "_cpu_flags", lambda: {"avx2", "avx512f"})  # no AVX-512BW/DQ/VL
    assert _loader.blas_coretype_override() is None
    assert isinstance(fastconv._C.blas_corename(), str) and fastconv._C.blas_corename()


# ---------------------------------------------------------------- streaming stores, row runs

@pytest.fixture
def stream_always():
    """Every output through the non-temporal path (normally only outputs >= 16 MiB)."""
    old = _C.get_stream_threshold()
    _C.set_stream_threshold(0)
    yield
    _C.set_stream_threshold(old)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("m, c", [(1, 1), (7, 3), (97, 17), (515, 64), (33, 70), (9, 257), (5000, 13)])
def test_streamed_row_runs_match_oracle(stream_always, threads, m, c):
    # Odd row counts leave partial runs of row_group(c) rows; c >= 256 is one row per run;
    # m*c above kParallelGrain with 3 threads splits runs unevenly.
    old = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(threads)
        x = randn(m, c) * np.float32(2) + np.float32(1)
        gamma, beta, dy = randn(c), randn(c), randn(m, c)
        y, mean, var, inv_std = _C.batch_norm_forward_train(x, gamma, beta, 1e-3)
        ry, rmean, rvar, _ = R.batch_norm_forward_train(f64(x), f64(gamma), f64(beta), 1e-3)
        close(mean, rmean, 1e-5)
        close(var, rvar, 1e-4)
        close(y, ry, 1e-4)
        yi = _C.batch_norm_forward_inference(x, gamma, beta, mean, var, 1e-3)
        close(yi, R.batch_norm_forward_inference(f64(x), f64(gamma), f64(beta), f64(mean), f64(var), 1e-3), 1e-4)
        dx, dgamma, dbeta = _C.batch_norm_backward(dy, x, gamma, mean, inv_std)
        rdx, rdgamma, rdbeta = R.batch_norm_backward(f64(dy), f64(x), f64(gamma), f64(mean), f64(inv_std))
        close(dx, rdx, 1e-4, scale=float(np.abs(f64(dy) * f64(gamma * inv_std)).max()))
        close(dgamma, rdgamma, 1e-4)
        close(dbeta, rdbeta, 1e-4)
        for act in ("linear", "relu", "sigmoid", "tanh"):
            for b in (beta, None):
                ya = _C.bias_act_forward(x, b, act)
                close(ya, R.bias_act_forward(f64(x), f64(b), act), 1e-5)
                for with_db in (True, False):
                    dz, db = _C.bias_act_backward(dy, ya, act, with_db)
                    rdz, rdb = R.bias_act_backward(f64(dy), f64(ya), act, with_db)
                    close(dz, rdz, 1e-5)
                    if with_db:
                        close(db, rdb, 1e-5)
    finally:
        fastconv.set_num_threads(old)


def test_tanh_accuracy_over_the_float_range():
    # Both branches of the vectorised tanh (fast_exp.h): the odd series below |x| = 0.55 and
    # 1 - 2/(exp(2|x|) + 1) above, subnormal to overflow, signed zeros, NaN.
    z = np.concatenate([np.linspace(-20, 20, 400001), np.logspace(-40, 2, 3000), -np.logspace(-40, 2, 3000),
                        [0.5499999, 0.55, 0.5500001, 88.0, 89.0, 1e30, np.inf]]).astype(np.float32)
    y = _C.bias_act_forward(z[None, :], None, "tanh")[0]
    np.testing.assert_allclose(y, np.tanh(f64(z)), rtol=5e-7, atol=0)
    y = _C.bias_act_forward(np.array([[0.0, -0.0, -np.inf, np.nan]], np.float32), None, "tanh")[0]
    assert y[0] == 0 and np.signbit(y[1]) and y[2] == -1 and np.isnan(y[3])


def test_global_avg_pool_long_sums_stay_accurate():
    # 112*112 pixels: float partial sums per 64 pixels, double across them.
    x = (RNG.standard_normal((2, 112, 112, 70)) + 100.0).astype(np.float32)
    close(_C.global_avg_pool2d_forward(x), R.global_avg_pool2d_forward(f64(x)), 1e-6, floor=False)


@pytest.mark.parametrize("shapes", [[(2, 3, 4, 5), (2, 3, 4, 1)], [(7, 3)], [(1, 1, 1, 64), (1, 1, 1, 32), (1, 1, 1, 7)],
                                    [(300, 40), (300, 200)], [(5,), (3,)]])
def test_concat_last_matches_numpy(shapes):
    rng = np.random.default_rng(len(shapes))
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    np.testing.assert_array_equal(_C.concat_last(arrays), np.concatenate(arrays, axis=-1))
    np.testing.assert_array_equal(R.concat_last(arrays), np.concatenate(arrays, axis=-1))


def test_concat_last_rejects_bad_input():
    a = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"arrays\[1\]"):
        _C.concat_last([a, np.ones((2, 4, 4), np.float32)])
    with pytest.raises(TypeError, match=r"arrays\[1\].*float32"):
        _C.concat_last([a, np.ones((2, 3, 4))])
    with pytest.raises(TypeError, match="C-contiguous"):
        _C.concat_last([a, np.ones((2, 3, 8), np.float32)[..., ::2]])
    with pytest.raises(ValueError, match="at least one"):
        _C.concat_last([])
    with pytest.raises(ValueError, match=r"arrays\[1\]"):
        R.concat_last([a, np.ones((3, 3, 4))])


def test_functional_concatenate_keeps_dtypes_and_other_axes():
    from fastconv import functional as F
    a, b = np.ones((2, 3), np.float64), np.zeros((2, 2), np.float64)
    out = F.concatenate([a, b])
    assert out.dtype == np.float64 and out.shape == (2, 5)  # not float32: numpy's own path
    x, y = np.ones((2, 3), np.float32), np.arange(6, dtype=np.float32).reshape(2, 3)[:, ::-1]
    np.testing.assert_array_equal(F.concatenate([x, y]), np.concatenate([x, y], -1))  # non-contiguous input
    np.testing.assert_array_equal(F.concatenate([x, y], axis=0), np.concatenate([x, y], 0))
