"""Conv2D(relu | sigmoid | tanh) + AveragePooling2D as one op (autograd/ops/conv_act_avg_pool.py,
issue 18 item 1) and its kernel, avg_pool2d_backward_activation (the pool's backward times the
activation's derivative in one pass).

Against: the unfused native ops (the same products in the same order: rtol 1e-6), the float64
NumPy oracle (rtol 1e-4, atol 1e-5 * max|ref|, as test_conv_relu_max_pool), float64 central
differences on the numpy backend, and the kernel against the reference's two passes.
"""
import numpy as np
import pytest

import fastconv as fc
from fastconv import _C, functional as F, layers, models
from fastconv import reference as R
from fastconv.autograd import Tensor, ops
from fastconv.reference.gradcheck import check_grad

import seeds
from fusion_check import assert_fusion_keeps_gradients

# (n, h, w, cin, cout, k, conv strides, conv padding, pool, pool strides, pool padding, activation)
CASES = [
    (2, 12, 12, 1, 6, 5, 1, "same", 2, None, "valid", "sigmoid"),   # LeNet-5 conv1, few channels
    (1, 9, 11, 3, 4, 3, 1, "valid", 3, 2, "same", "tanh"),          # odd sizes, overlapping windows
    (2, 10, 10, 6, 16, 5, 1, "valid", 2, None, "valid", "sigmoid"),  # LeNet-5 conv2
    (1, 8, 9, 16, 40, 2, 2, "same", 2, 1, "same", "relu"),          # many channels, stride-1 pool
    (3, 7, 7, 2, 5, 3, 1, "same", 2, None, "same", "relu"),         # a partial last window
]


def _inputs(case, dtype=np.float32):
    n, h, w, cin, cout, k = case[:6]
    rng = np.random.default_rng(seeds.seed_of("conv_act_avg_pool", case))
    return (rng.standard_normal((n, h, w, cin)).astype(dtype),
            rng.standard_normal((k, k, cin, cout)).astype(dtype) * 0.5,
            rng.standard_normal(cout).astype(dtype) * 0.5)


def _args(case):
    s, padding, pool, pool_s, pool_padding, act = case[6:]
    return dict(strides=s, padding=padding), dict(pool_size=pool, strides=pool_s, padding=pool_padding), act


def _fused(x, w, b, conv, pool, act):
    return ops.conv2d_activation_avg_pool(x, w, b, **conv, activation=act, pool_size=pool["pool_size"],
                                          pool_strides=pool["strides"], pool_padding=pool["padding"])


def _unfused(x, w, b, conv, pool, act):
    return ops.avg_pool2d(ops.conv2d(x, w, b, activation=act, **conv), **pool)


def _value_and_grads(fn, arrays, conv, pool, act, dy_seed=0):
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    y = fn(*tensors, conv, pool, act)
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(arrays[0].dtype)
    (y * Tensor(dy)).sum().backward()
    return [np.array(y.data)] + [np.array(t.grad) for t in tensors]


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("case", CASES)
def test_fused_op_matches_the_unfused_ops_and_the_oracle(case):
    arrays = _inputs(case)
    conv, pool, act = _args(case)
    fused = _value_and_grads(_fused, arrays, conv, pool, act)
    plain = _value_and_grads(_unfused, arrays, conv, pool, act)
    assert fused[0].shape == plain[0].shape
    for got, ref in zip(fused, plain):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    with fc.backend("numpy"):
        oracle = _value_and_grads(_unfused, [a.astype(np.float64) for a in arrays], conv, pool, act)
    for got, ref in zip(fused, oracle):
        _close(got, ref)
    assert float(np.abs(fused[1]).max()) > 0  # some gradient reaches x: the test can fail


@pytest.mark.parametrize("case", [CASES[1], CASES[4]])
def test_fused_op_gradients_by_central_differences(case):
    n, h, w, cin, cout, k = case[:6]
    small = (1, min(h, 7), min(w, 7), min(cin, 3), min(cout, 3), k) + case[6:]
    arrays = _inputs(small, np.float64)
    conv, pool, act = _args(small)
    with fc.backend("numpy"):
        y = F.avg_pool2d(F.conv2d(*arrays, activation=act, **conv), **pool)
        dy = np.random.default_rng(1).standard_normal(y.shape)
        tensors = [Tensor(a, requires_grad=True) for a in arrays]
        (_fused(*tensors, conv, pool, act) * Tensor(dy)).sum().backward()

        def loss(i):
            def f(value):
                args = list(arrays)
                args[i] = value
                return float((F.avg_pool2d(F.conv2d(*args, activation=act, **conv), **pool) * dy).sum())
            return f
        for i, (a, t) in enumerate(zip(arrays, tensors)):
            check_grad(loss(i), a, t.grad, name=f"input {i}", skip_kinks=True, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape,pool,strides,pads", [
    ((1, 28, 28, 6), (2, 2), (2, 2), (0, 0, 0, 0)),   # LeNet conv1's output, packed few-channel path
    ((3, 10, 10, 16), (2, 2), (2, 2), (0, 0, 0, 0)),  # LeNet conv2's output
    ((2, 7, 9, 3), (3, 3), (2, 2), (1, 1, 1, 1)),     # padded overlapping windows, few channels
    ((1, 5, 6, 37), (2, 3), (1, 2), (0, 1, 1, 1)),    # channels split into blocks and a tail
    ((1, 4, 4, 300), (2, 2), (2, 2), (0, 0, 0, 0)),   # channel blocks across tasks at batch 1
])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_matches_the_two_reference_passes(shape, pool, strides, pads, activation, threads):
    rng = np.random.default_rng(seeds.seed_of("avg_pool_backward_activation", shape, activation))
    z = rng.standard_normal(shape)
    y = R.bias_act_forward(z, None, activation).astype(np.float32)
    g = R.avg_pool2d_forward(y.astype(np.float64), pool, strides, pads)
    dy = rng.standard_normal(g.shape).astype(np.float32)
    dx = R.avg_pool2d_backward(dy.astype(np.float64), shape, pool, strides, pads)
    ref, _ = R.bias_act_backward(dx, y.astype(np.float64), activation, False)
    old = fc.get_num_threads()
    fc.set_num_threads(threads)
    try:
        got = _C.avg_pool2d_backward_activation(dy, y, pool, strides, pads, activation)
        # exactly the unfused kernels' floats: the same products in the same order
        plain = _C.avg_pool2d_backward(dy, shape, pool, strides, pads)
        plain = _C.bias_act_backward(plain, y, activation, False)[0] if activation != "linear" else plain
    finally:
        fc.set_num_threads(old)
    _close(got, ref)
    np.testing.assert_array_equal(got, plain)


def test_kernel_argument_errors():
    y, dy = np.zeros((1, 4, 4, 2), np.float32), np.zeros((1, 2, 2, 2), np.float32)
    with pytest.raises(ValueError, match="dy must have shape"):
        _C.avg_pool2d_backward_activation(dy[:, :1], y, (2, 2), (2, 2), (0, 0, 0, 0), "relu")
    with pytest.raises(ValueError, match="activation"):
        _C.avg_pool2d_backward_activation(dy, y, (2, 2), (2, 2), (0, 0, 0, 0), "softmax")
    with pytest.raises(TypeError, match="y must have dtype float32"):
        _C.avg_pool2d_backward_activation(dy, y.astype(np.float64), (2, 2), (2, 2), (0, 0, 0, 0), "relu")


def test_functional_without_the_kernel_runs_two_passes():
    rng = np.random.default_rng(3)
    y = R.bias_act_forward(rng.standard_normal((2, 6, 6, 3)), None, "tanh")
    dy = rng.standard_normal((2, 3, 3, 3))
    with fc.backend("numpy"):
        got = F.avg_pool2d_backward_activation(dy, y, "tanh", 2)
    ref, _ = R.bias_act_backward(R.avg_pool2d_backward(dy, y.shape, (2, 2), (2, 2), (0, 0, 0, 0)), y, "tanh", False)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_lenet5_classic_fuses_and_keeps_its_gradients():
    fc.set_seed(7)
    m = fc.models.lenet5((28, 28, 1), 10, variant="classic", classifier_activation=None)
    names = [layer.name for layer in m.layers]
    assert m.fusion_plan(True) == [f"{names[0]} + {names[1]}", f"{names[2]} + {names[3]}"]
    x = np.random.default_rng(5).standard_normal((3, 28, 28, 1)).astype(np.float32)
    assert_fusion_keeps_gradients(m, x)


def test_linear_conv_and_avg_pool_do_not_fuse():
    m = models.Sequential([layers.Input((8, 8, 2)), layers.Conv2D(3, 3), layers.AveragePooling2D(2),
                           layers.Conv2D(3, 3, activation="sigmoid", padding="same"), layers.Dropout(0.1),
                           layers.AveragePooling2D(2)])
    assert m.fusion_plan(True) == []
