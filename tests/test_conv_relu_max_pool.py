"""Conv2D + ReLU + MaxPooling2D as one op (autograd/ops/conv_relu_max_pool.py, issue 18).

The fused op applies the ReLU mask to the pooled gradient instead of the conv output; it must
give the unfused sequence's values and gradients: native float32 against the unfused native
ops (rtol 1e-6: the same kernels, only the mask moves) and against the float64 NumPy oracle
(rtol 1e-4, atol 1e-5 * max|ref|, as test_fusion), and float64 central differences on the
numpy backend (rtol 1e-5).
"""
import numpy as np
import pytest

import fastconv as fc
from fastconv import functional as F, layers, models
from fastconv.autograd import Tensor, ops
from fastconv.reference.gradcheck import check_grad

import seeds
from fusion_check import assert_fusion_keeps_gradients

# (n, h, w, cin, cout, k, conv strides, conv padding, pool, pool strides, pool padding)
CASES = [
    (2, 12, 12, 1, 6, 5, 1, "same", 2, None, "valid"),   # LeNet-5 conv1, few channels
    (1, 9, 11, 3, 4, 3, 1, "valid", 3, 2, "same"),       # odd sizes, overlapping windows
    (2, 10, 10, 6, 16, 5, 1, "valid", 2, None, "valid"),  # LeNet-5 conv2
    (1, 8, 9, 16, 8, 2, 2, "same", 2, 1, "same"),        # even kernel 'same', stride 2
]


def _inputs(case, dtype=np.float32):
    n, h, w, cin, cout, k = case[:6]
    rng = np.random.default_rng(seeds.seed_of("conv_relu_max_pool", case))
    return (rng.standard_normal((n, h, w, cin)).astype(dtype),
            rng.standard_normal((k, k, cin, cout)).astype(dtype) * 0.5,
            rng.standard_normal(cout).astype(dtype) * 0.5)


def _args(case):
    s, padding, pool, pool_s, pool_padding = case[6:]
    return dict(strides=s, padding=padding), dict(pool_size=pool, strides=pool_s, padding=pool_padding)


def _fused(x, w, b, conv, pool):
    return ops.conv2d_relu_max_pool(x, w, b, **conv, pool_size=pool["pool_size"], pool_strides=pool["strides"],
                                    pool_padding=pool["padding"])


def _unfused(x, w, b, conv, pool):
    return ops.max_pool2d(ops.conv2d(x, w, b, activation="relu", **conv), **pool)


def _value_and_grads(fn, arrays, conv, pool, dy_seed=0):
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    y = fn(*tensors, conv, pool)
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(arrays[0].dtype)
    (y * Tensor(dy)).sum().backward()
    return [np.array(y.data)] + [np.array(t.grad) for t in tensors]


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("case", CASES)
def test_fused_op_matches_the_unfused_ops_and_the_oracle(case):
    arrays = _inputs(case)
    conv, pool = _args(case)
    fused = _value_and_grads(_fused, arrays, conv, pool)
    plain = _value_and_grads(_unfused, arrays, conv, pool)
    assert fused[0].shape == plain[0].shape
    for got, ref in zip(fused, plain):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    with fc.backend("numpy"):
        oracle = _value_and_grads(_unfused, [a.astype(np.float64) for a in arrays], conv, pool)
    for got, ref in zip(fused, oracle):
        _close(got, ref)
    assert float(np.abs(fused[1]).max()) > 0  # some gradient reaches x: the test can fail


@pytest.mark.parametrize("case", [CASES[1], CASES[3]])
def test_fused_op_gradients_by_central_differences(case):
    n, h, w, cin, cout, k = case[:6]
    small = (1, min(h, 7), min(w, 7), min(cin, 3), min(cout, 3), k) + case[6:]
    arrays = _inputs(small, np.float64)
    conv, pool = _args(small)
    with fc.backend("numpy"):
        y = F.max_pool2d(F.conv2d(*arrays, activation="relu", **conv), **pool)
        dy = np.random.default_rng(1).standard_normal(y.shape)
        tensors = [Tensor(a, requires_grad=True) for a in arrays]
        (_fused(*tensors, conv, pool) * Tensor(dy)).sum().backward()

        def loss(i):
            def f(value):
                args = list(arrays)
                args[i] = value
                return float((F.max_pool2d(F.conv2d(*args, activation="relu", **conv), **pool) * dy).sum())
            return f
        for i, (a, t) in enumerate(zip(arrays, tensors)):
            check_grad(loss(i), a, t.grad, name=f"input {i}", skip_kinks=True, rtol=1e-5, atol=1e-7)


def test_fused_op_without_an_argmax_kernel_keeps_the_conv_output(monkeypatch):
    # The cuda backend has no argmax pooling: the op then pools backward from the saved output.
    arrays = _inputs(CASES[1])
    conv, pool = _args(CASES[1])
    plain = _value_and_grads(_unfused, arrays, conv, pool)
    monkeypatch.setattr(F, "max_pool2d_with_argmax", lambda y, **p: (F.max_pool2d(y, **p), None))
    for got, ref in zip(_value_and_grads(_fused, arrays, conv, pool), plain):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_fused_op_propagates_nan():
    x, w, b = _inputs(CASES[0])
    x[0, 3, 4, 0] = np.nan
    conv, pool = _args(CASES[0])
    fused, plain = _fused(x, w, b, conv, pool).data, _unfused(x, w, b, conv, pool).data
    assert np.isnan(fused).any()
    np.testing.assert_array_equal(np.isnan(fused), np.isnan(plain))
    np.testing.assert_allclose(fused, plain, rtol=1e-6, atol=1e-6)


def _lenet_like(split_relu):
    act = None if split_relu else "relu"
    stack = [layers.Input((12, 12, 1)), layers.Conv2D(4, 5, padding="same", activation=act, name="c1")]
    stack += [layers.ReLU(name="r1")] if split_relu else []
    stack += [layers.MaxPooling2D(2, name="p1"), layers.Conv2D(5, 3, activation="relu", name="c2"),
              layers.MaxPooling2D(2, padding="same", name="p2"), layers.Flatten(), layers.Dense(3, name="d")]
    return models.Sequential(stack)


@pytest.mark.parametrize("split_relu", [False, True])
def test_models_fuse_conv_relu_max_pool_and_keep_their_gradients(split_relu):
    m = _lenet_like(split_relu)
    first = "c1 + r1 + p1" if split_relu else "c1 + p1"
    assert m.fusion_plan(True) == [first, "c2 + p2"]
    x = np.random.default_rng(5).standard_normal((3, 12, 12, 1)).astype(np.float32)
    assert_fusion_keeps_gradients(m, x)


def test_conv_with_other_activation_or_pool_does_not_fuse():
    # (a relu, sigmoid or tanh conv before an average pool fuses: tests/test_conv_act_avg_pool.py)
    m = models.Sequential([layers.Input((8, 8, 2)), layers.Conv2D(3, 3, activation="tanh"), layers.MaxPooling2D(2),
                           layers.Conv2D(3, 3, padding="same"), layers.AveragePooling2D(2)])
    assert m.fusion_plan(True) == []
