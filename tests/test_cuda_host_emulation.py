"""The cuda backend's kernels and their Python wrappers (im2col chunking, grouped/pointwise
GEMM paths, transposes, output allocation, argument order of every _cuda call) run on the
CPU through tests/cuda_emulation.py (a strict NumPy-backed CuPy and the .cu kernels compiled
for the host), against the NumPy oracle: a wrong transpose, a mis-ordered argument or a
kernel bug fails here without a GPU."""
import types

import numpy as np
import pytest

from fastconv import cuda as fcuda
from fastconv import reference as R

import cuda_emulation


class _OnHost(types.SimpleNamespace):
    """fastconv.cuda's functions with their device results copied back to NumPy."""

    def __getattr__(self, name):
        fn = getattr(fcuda, name)
        return lambda *a, **k: cuda_emulation.host(fn(*a, **k))


gpu = _OnHost()


@pytest.fixture
def emulated(monkeypatch):
    cuda_emulation.install(monkeypatch)
    return monkeypatch


def test_norm_and_softmax_wrappers_pass_arguments_in_kernel_order(emulated):
    # The fakes are the oracle, so this checks the wrappers: shapes, (m, c) views, which
    # buffer goes where, and the argument order of every _cuda call.
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((2, 3, 3, 4)).astype(np.float32), rng.standard_normal((2, 3, 3, 4)).astype(np.float32)
    g, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    got = gpu.batch_norm_forward_train(x, g, b, 1e-3)
    want = R.batch_norm_forward_train(x, g, b, 1e-3)
    assert got[0].shape == x.shape
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, rtol=1e-6, atol=1e-6)
    mean, var = want[1], want[2] + 1
    np.testing.assert_allclose(gpu.batch_norm_forward_inference(x, g, b, mean, var, 1e-3),
                               R.batch_norm_forward_inference(x, g, b, mean, var, 1e-3), rtol=1e-6, atol=1e-6)
    for a, w in zip(gpu.batch_norm_backward(dy, x, g, want[1], want[3]), R.batch_norm_backward(dy, x, g, want[1], want[3])):
        np.testing.assert_allclose(a, w, rtol=1e-6, atol=1e-6)
    logits, labels = rng.standard_normal((6, 5)).astype(np.float32), rng.integers(0, 5, 6)
    p = gpu.softmax_forward(logits)
    np.testing.assert_allclose(p, R.softmax_forward(logits), rtol=1e-6)
    np.testing.assert_allclose(gpu.softmax_backward(logits, p), R.softmax_backward(logits, p), rtol=1e-6, atol=1e-7)
    loss, probs = gpu.softmax_cross_entropy_forward(logits, labels)
    want_loss, want_probs = R.softmax_cross_entropy_forward(logits, labels)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    np.testing.assert_allclose(probs, want_probs, rtol=1e-6)
    dloss = rng.standard_normal(6).astype(np.float32)
    np.testing.assert_allclose(gpu.softmax_cross_entropy_backward(probs, labels, dloss),
                               R.softmax_cross_entropy_backward(probs, labels, dloss), rtol=1e-6)
    with pytest.raises(ValueError, match="gamma must have shape"):
        gpu.batch_norm_forward_train(x, g[:3], b, 1e-3)


CONV_CASES = [
    ((2, 9, 8, 3), (3, 3, 3, 5), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 11, 10, 4), (3, 2, 4, 6), (2, 3), (0, 2, 1, 0), (2, 1), 1),
    ((3, 7, 7, 16), (1, 1, 16, 8), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((2, 7, 7, 8), (1, 1, 4, 6), (1, 1), (0, 0, 0, 0), (1, 1), 2),
    ((2, 8, 9, 6), (3, 3, 2, 9), (1, 2), (1, 1, 1, 1), (1, 1), 3),
    ((2, 10, 10, 5), (3, 3, 1, 5), (2, 2), (0, 1, 0, 1), (1, 1), 5),
    ((2, 9, 9, 4), (5, 3, 1, 8), (1, 1), (2, 2, 1, 1), (1, 2), 4),
]


@pytest.mark.parametrize("xs,ws,strides,pads,dil,groups", CONV_CASES)
@pytest.mark.parametrize("chunked", [False, True])
def test_conv_orchestration_matches_the_oracle(emulated, xs, ws, strides, pads, dil, groups, chunked):
    if chunked:
        emulated.setattr(fcuda, "_workspace_limit", 1)  # one image per im2col chunk
    rng = np.random.default_rng(sum(xs) + groups)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[3])
    tol = dict(rtol=1e-4, atol=1e-4)
    want = R.conv2d_forward(x, w, b, strides, pads, dil, groups)
    np.testing.assert_allclose(gpu.conv2d_forward(x, w, b, strides, pads, dil, groups), want, **tol)
    dy = rng.standard_normal(want.shape)
    np.testing.assert_allclose(gpu.conv2d_backward_data(dy, w, xs, strides, pads, dil, groups),
                               R.conv2d_backward_data(dy, w, xs, strides, pads, dil, groups), **tol)
    dw, db = gpu.conv2d_backward_weights(dy, x, ws, strides, pads, dil, groups, True)
    want_dw, want_db = R.conv2d_backward_weights(dy, x, ws, strides, pads, dil, groups, True)
    np.testing.assert_allclose(dw, want_dw, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(db, want_db, rtol=1e-4, atol=1e-3)


def test_dense_pool_and_activation_wrappers_match_the_oracle(emulated):
    rng = np.random.default_rng(3)
    x, w, b, dy = rng.standard_normal((5, 7)), rng.standard_normal((7, 3)), rng.standard_normal(3), rng.standard_normal((5, 3))
    np.testing.assert_allclose(gpu.dense_forward(x, w, b), R.dense_forward(x, w, b), rtol=1e-5, atol=1e-5)
    for got, want in zip(gpu.dense_backward(dy, x, w), R.dense_backward(dy, x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    xs, pool, strides, pads = (2, 7, 6, 3), (3, 2), (2, 2), (1, 1, 0, 1)
    x = rng.standard_normal(xs).astype(np.float32)
    y = gpu.max_pool2d_forward(x, pool, strides, pads)
    np.testing.assert_array_equal(y, R.max_pool2d_forward(x, pool, strides, pads))
    g = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(gpu.max_pool2d_backward(g, x, pool, strides, pads), R.max_pool2d_backward(g, x, pool, strides, pads))
    np.testing.assert_allclose(gpu.avg_pool2d_forward(x, pool, strides, pads), R.avg_pool2d_forward(x, pool, strides, pads), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gpu.avg_pool2d_backward(g, xs, pool, strides, pads), R.avg_pool2d_backward(g, xs, pool, strides, pads), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gpu.global_avg_pool2d_forward(x), R.global_avg_pool2d_forward(x), rtol=1e-6)
    gg = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(gpu.global_avg_pool2d_backward(gg, xs), R.global_avg_pool2d_backward(gg, xs), rtol=1e-6)
    for act in ("linear", "relu", "sigmoid", "tanh"):
        yb = gpu.bias_act_forward(x, b[:3], act)
        np.testing.assert_allclose(yb, R.bias_act_forward(x, b[:3].astype(np.float32), act), rtol=1e-6, atol=1e-6)
        dz, dbb = gpu.bias_act_backward(x, yb, act, True)
        want_dz, want_db = R.bias_act_backward(x, yb, act, True)
        np.testing.assert_allclose(dz, want_dz, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(dbb, want_db, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="activation must be one of"):
        gpu.bias_act_forward(x, None, "gelu")
    with pytest.raises(ValueError, match="dy must have shape"):
        gpu.max_pool2d_backward(g[:1], x, pool, strides, pads)
