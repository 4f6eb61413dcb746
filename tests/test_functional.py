"""fastconv.functional: argument handling (TF padding rule), dispatch, dtype policy, errors.

The kernels themselves are checked against the oracle in test_native_*.py; here the public
array API is checked end to end on both CPU-side backends against fastconv.reference.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastconv
from fastconv import functional as F
from fastconv import reference as R
from fastconv.backend import kernels
from threads_used import threads_used

import goldens


def test_same_padding_matches_tensorflow_rule():
    # Against TensorFlow itself, not a restatement of the formula: for each (n, k, s, d) of
    # tests/golden's grid, TensorFlow's conv2d read input cell table[o, j] (1-based, 0 = a
    # padding cell) at tap j of output o. Our output size and (before, after) must lay every
    # window out the same way, and pad after exactly as far as the last window reaches.
    tables = goldens.padding_tables()
    assert len(tables) > 300
    for (n, k, s, d, padding), table in tables:
        case = (n, k, s, d, padding)
        out = F.conv_output_size(n, k, s, padding, d)
        assert out == table.shape[0], case
        before, after = F.same_padding(n, k, s, d) if padding == "same" else (0, 0)
        idx = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d - before
        np.testing.assert_array_equal(np.where((idx >= 0) & (idx < n), idx + 1, 0), table, err_msg=str(case))
        assert after == max(int(idx.max()) - (n - 1), 0), case
        if padding == "same":
            assert after - before in (0, 1), case  # the extra cell goes at the end
            assert F.resolve_padding("same", (n, n), (k, k), (s, s), (d, d)) == (before, after, before, after)


@pytest.mark.parametrize("padding,expected", [
    ("valid", (0, 0, 0, 0)), ("VALID", (0, 0, 0, 0)), ("same", (1, 2, 1, 2)), ("Same", (1, 2, 1, 2)),
    (2, (2, 2, 2, 2)), ((1, 3), (1, 1, 3, 3)), (((0, 1), (2, 3)), (0, 1, 2, 3)),
])
def test_resolve_padding_forms(padding, expected):
    assert F.resolve_padding(padding, (14, 14), (4, 4), (1, 1)) == expected


@pytest.mark.parametrize("bad,exc", [("full", ValueError), (-1, ValueError), ((1, 2, 3), TypeError), (1.5, TypeError)])
def test_resolve_padding_rejects(bad, exc):
    with pytest.raises(exc, match="padding"):
        F.resolve_padding(bad, (8, 8), (3, 3), (1, 1))


def _conv_case(rng, n=2, h=9, w=7, c=4, kh=4, kw=3, o=6, groups=2):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((kh, kw, c // groups, o)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    return x, wt, b


@pytest.mark.parametrize("padding", ["same", "valid", 1, ((0, 2), (1, 0))])
@pytest.mark.parametrize("strides,dilation", [(1, 1), (2, 1), ((1, 3), 1), (1, 2)])
def test_conv2d_both_backends_match_reference(any_backend, rng, padding, strides, dilation):
    x, w, b = _conv_case(rng)
    kw = dict(strides=strides, padding=padding, dilation_rate=dilation, groups=2)
    y = F.conv2d(x, w, b, **kw)
    sp = F.resolve_padding(padding, (9, 7), (4, 3), F._args.pair(strides, "s"), F._args.pair(dilation, "d"))
    ref = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                           F._args.pair(strides, "s"), sp, F._args.pair(dilation, "d"), 2)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = F.conv2d_backward(dy, x, w, **kw)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    np.testing.assert_allclose(db, dy.astype(np.float64).sum((0, 1, 2)), rtol=1e-4, atol=1e-4)
    # adjoint identity: <conv(x), dy> == <x, dx> (exact in real arithmetic)
    lhs = float((F.conv2d(x, w, **kw).astype(np.float64) * dy).sum())
    assert lhs == pytest.approx(float((x.astype(np.float64) * dx).sum()), rel=1e-4, abs=1e-3)
    assert lhs == pytest.approx(float((w.astype(np.float64) * dw).sum()), rel=1e-4, abs=1e-3)


def test_cpu_backend_converts_float64_and_noncontiguous(rng):
    x, w, _ = _conv_case(rng, groups=1)
    x64 = np.asfortranarray(x.astype(np.float64))
    with fastconv.backend("cpu"):
        y = F.conv2d(x64, w, padding="same")
    assert y.dtype == np.float32
    with fastconv.backend("numpy"):
        y64 = F.conv2d(x64, w.astype(np.float64), padding="same")
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-4)


def test_depthwise_matches_keras_channel_order(any_backend, rng):
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)  # (KH, KW, C, M)
    y = F.depthwise_conv2d(x, w, padding="same")
    for c in range(3):
        for m in range(2):
            single = F.conv2d(x[..., c:c + 1], w[:, :, c:c + 1, m:m + 1], padding="same")
            np.testing.assert_allclose(y[..., c * 2 + m], single[..., 0], rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = F.depthwise_conv2d_backward(dy, x, w, padding="same")
    assert dw.shape == w.shape and dx.shape == x.shape and db.shape == (6,)


def test_pools_and_global_pools(any_backend):
    x = np.arange(2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)
    y = F.max_pool2d(x, 2, padding="same")  # 5 -> 3; last window is one real column/row
    assert y.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(y[0, 2, 2], x[0, 4, 4])
    a = F.avg_pool2d(x, 2, padding="same")
    np.testing.assert_allclose(a[0, 2, 2], x[0, 4, 4])  # padded cells are not counted
    np.testing.assert_allclose(a[0, 0, 0], x[0, :2, :2].mean((0, 1)))
    np.testing.assert_allclose(F.global_avg_pool2d(x), x.mean((1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(F.global_max_pool2d(x), x.max((1, 2)))
    dx = F.global_max_pool2d_backward(np.ones((2, 3), np.float32), x)
    assert dx.sum() == 6 and (dx[:, 4, 4] == 1).all()


def test_softmax_cross_entropy_stable_and_labels_checked(any_backend):
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]], np.float32)
    loss, probs = F.softmax_cross_entropy(logits, np.array([1, 2]))
    np.testing.assert_allclose(loss, [1e4, np.log(3)], rtol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        F.softmax_cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match="labels must have shape"):
        F.softmax_cross_entropy(logits, np.array([0, 1, 2]))


@pytest.mark.parametrize("call,match", [
    (lambda: F.conv2d(np.zeros((2, 5, 5)), np.zeros((3, 3, 1, 1))), r"x must be 4-D \(N, H, W, C\)"),
    (lambda: F.conv2d(np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 2, 4))), "channel"),
    (lambda: F.conv2d(np.zeros((1, 5, 5, 4)), np.zeros((3, 3, 2, 3)), groups=2), "groups"),
    (lambda: F.conv2d(np.zeros((1, 2, 2, 1)), np.zeros((3, 3, 1, 1))), "larger than the padded input"),
    (lambda: F.conv2d(np.zeros((1, 5, 5, 1)), np.zeros((3, 3, 1, 1)), strides=0), "strides"),
    (lambda: F.conv2d(np.zeros((1, 5, 5, 1)), np.zeros((3, 3, 1, 1)), groups=0), "groups"),
    (lambda: F.max_pool2d(np.zeros((1, 4, 4, 1)), 2, padding=2), "pad"),
    (lambda: F.dense(np.zeros((2, 3)), np.zeros((4, 5))), "features"),
    (lambda: F.bias_activation(np.zeros((2, 3)), None, "gelu"), "activation"),
    (lambda: F.batch_norm_train(np.zeros((4, 3)), np.ones(2), np.zeros(3)), "gamma"),
])
def test_bad_input_raises_clear_errors(any_backend, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_empty_batch_gives_empty_result(any_backend):
    y = F.conv2d(np.zeros((0, 6, 6, 2), np.float32), np.ones((3, 3, 2, 4), np.float32), padding="same")
    assert y.shape == (0, 6, 6, 4)


def test_backend_selection():
    assert fastconv.get_backend() == "cpu"
    with fastconv.backend("numpy"):
        assert fastconv.get_backend() == "numpy"
        assert kernels() is R
    assert fastconv.get_backend() == "cpu"
    with pytest.raises(ValueError, match="unknown backend"):
        fastconv.set_backend("tpu")
    with pytest.raises(TypeError, match="backend must be a str"):
        fastconv.set_backend(3)


def test_num_threads_knob():
    n = fastconv.get_num_threads()
    # The knob reaches the kernels: a conv well above the serial cutoff (2^21 multiply-adds).
    x, w = np.ones((8, 32, 32, 16), np.float32), np.ones((3, 3, 16, 16), np.float32)
    try:
        for t in (1, 3):
            fastconv.set_num_threads(t)
            assert fastconv.get_num_threads() == t
            with fastconv.backend("cpu"), threads_used() as used:
                F.conv2d(x, w)
            assert (used.count >= 2) if t > 1 else (used.count == 1), (t, used.count)
    finally:
        fastconv.set_num_threads(n)
    with pytest.raises((TypeError, ValueError)):
        fastconv.set_num_threads(0)
