"""Autograd: every differentiable op by float64 central differences (numpy backend), graph
reuse, no_grad, accumulation, freeing, moving statistics."""
import numpy as np
import pytest

import fastconv as fc
from fastconv.autograd import Tensor, Variable, no_grad, ops
from fastconv.reference.gradcheck import check_grad

pytestmark = pytest.mark.usefixtures("numpy_backend")


def check_op(fn, *arrays, seed=0, skip_kinks=False, rtol=1e-5, atol=1e-7):
    """Backprop a random cotangent through fn and compare every input gradient numerically."""
    arrays = [np.asarray(a, np.float64) for a in arrays]
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    dy = np.random.default_rng(seed).standard_normal(out.shape)
    (out * dy).sum().backward()
    for i, a in enumerate(arrays):
        def scalar(v, i=i):
            args = [Tensor(v if j == i else arrays[j]) for j in range(len(arrays))]
            with no_grad():
                return float((fn(*args).data * dy).sum())
        check_grad(scalar, a, tensors[i].grad, name=f"input {i}", skip_kinks=skip_kinks, rtol=rtol, atol=atol)


R = np.random.default_rng(42)
def r(*shape): return R.standard_normal(shape)
def pos(*shape): return R.uniform(0.5, 2.0, shape)


@pytest.mark.parametrize("fn,args", [
    (lambda a, b: a + b, (r(3, 4), r(4))),
    (lambda a, b: a - b, (r(3, 1), r(1, 4))),
    (lambda a, b: a * b, (r(2, 3, 4), r(3, 1))),
    (lambda a, b: a / b, (r(3, 4), pos(3, 4))),
    (lambda a, b: (a @ b), (r(3, 5), r(5, 2))),
    (lambda a: -a ** 3, (r(3, 4),)),
    (lambda a: a.sum(axis=1, keepdims=True) * a, (r(3, 4),)),
    (lambda a: a.mean(axis=(0, 2)), (r(2, 3, 4),)),
    (lambda a: a.max(axis=1), (r(3, 5),)),
    (lambda a: a.reshape(6, 2).T, (r(3, 4),)),
    (lambda a: a.transpose(2, 0, 1), (r(2, 3, 4),)),
    (lambda a: a[1:, ::2], (r(3, 5),)),
    (lambda a: a[np.array([0, 2, 0])], (r(3, 4),)),
    (lambda a: a.exp() + pos(3).reshape(3) * 0, (r(3),)),
    (lambda a: a.log(), (pos(4),)),
    (lambda a: a.sqrt(), (pos(4),)),
    (lambda a: a.abs(), (np.array([-2.0, -0.5, 0.7, 1.5]),)),
    (lambda a: a.clip(-0.5, 0.5), (np.array([-2.0, -0.3, 0.2, 1.5]),)),
    (lambda a, b: ops.maximum(a, b) + ops.minimum(a, b) * 2, (np.array([1.0, -2.0, 3.0]), np.array([0.0, 1.0, 2.5]))),
    (lambda a, b: ops.where(np.array([True, False, True]), a, b), (r(3), r(3))),
    (lambda a, b: ops.concatenate([a, b, a], axis=1), (r(2, 3), r(2, 1))),
    (lambda a: ops.split(a, [1, 3], axis=1)[1] * 2, (r(2, 4),)),
    (lambda a: ops.pad(a, ((0, 0), (1, 2), (2, 0), (0, 0))), (r(1, 2, 2, 3),)),
    (lambda a: a.square(), (r(3),)),
])
def test_math_op_gradients(fn, args):
    check_op(fn, *args)


@pytest.mark.parametrize("fn,args,kinks", [
    (lambda x, w, b: ops.conv2d(x, w, b, strides=2, padding="same", groups=2), (r(2, 5, 6, 4), r(3, 2, 2, 4), r(4)), False),
    (lambda x, w: ops.conv2d(x, w, dilation_rate=2, padding=((1, 0), (0, 2))), (r(1, 6, 5, 2), r(2, 3, 2, 3)), False),
    (lambda x, w, b: ops.depthwise_conv2d(x, w, b, padding="same"), (r(2, 4, 4, 3), r(3, 3, 3, 2), r(6)), False),
    (lambda x, w, b: ops.dense(x, w, b), (r(4, 5), r(5, 3), r(3)), False),
    (lambda x, w: ops.dense(x, w), (r(2, 3, 5), r(5, 3)), False),
    (lambda x, b: ops.bias_activation(x, b, "sigmoid"), (r(3, 4), r(4)), False),
    (lambda x: ops.tanh(x), (r(3, 4),), False),
    (lambda x: ops.relu(x), (r(3, 4),), True),
    (lambda x: ops.max_pool2d(x, 3, 2, "same"), (R.permutation(2 * 5 * 5 * 2).reshape(2, 5, 5, 2) / 10.0,), True),
    (lambda x: ops.avg_pool2d(x, 2, 1, "same"), (r(2, 3, 5, 2),), False),
    (lambda x: ops.global_avg_pool2d(x), (r(2, 3, 3, 2),), False),
    (lambda x: ops.global_max_pool2d(x), (R.permutation(18).reshape(1, 3, 3, 2) / 3.0,), True),
    (lambda x: ops.softmax(x), (r(3, 5),), False),
    (lambda x: ops.softmax(x, axis=0), (r(3, 5),), False),
    (lambda x: ops.log_softmax(x), (r(3, 5),), False),
    (lambda x: ops.softmax_cross_entropy(x, np.array([0, 4, 2])), (r(3, 5),), False),
])
def test_kernel_op_gradients(fn, args, kinks):
    check_op(fn, *args, skip_kinks=kinks, rtol=1e-4, atol=1e-6)


def test_batch_norm_training_gradient_and_moving_stats():
    x, gamma, beta = r(4, 3, 3, 5), pos(5), r(5)
    mm, mv = Variable(np.zeros(5), trainable=False), Variable(np.ones(5), trainable=False)
    check_op(lambda x, g, b: ops.batch_norm(x, g, b, mm, mv, training=True), x, gamma, beta, rtol=1e-4, atol=1e-6)
    # check_op ran the forward once with grad and many times under no_grad: count them all.
    mm2, mv2 = Variable(np.zeros(5), trainable=False), Variable(np.ones(5), trainable=False)
    ops.batch_norm(Tensor(x), gamma, beta, mm2, mv2, training=True, momentum=0.9)
    np.testing.assert_allclose(mm2.data, 0.1 * x.mean((0, 1, 2)), rtol=1e-10)
    np.testing.assert_allclose(mv2.data, 0.9 + 0.1 * x.var((0, 1, 2)), rtol=1e-10)


def test_batch_norm_inference_gradient_uses_moving_stats():
    mean, var = Variable(r(5), trainable=False), Variable(pos(5), trainable=False)
    check_op(lambda x, g, b: ops.batch_norm(x, g, b, mean, var, training=False), r(6, 5), pos(5), r(5))
    y = ops.batch_norm(Tensor(np.ones((2, 5))), None, None, mean, var, training=False, epsilon=0.0)
    np.testing.assert_allclose(y.data, np.broadcast_to((1 - mean.data) / np.sqrt(var.data), (2, 5)))


def test_reused_tensor_gets_summed_gradients():
    # residual: y = relu(conv(x)) + x ; DenseNet: concat(x, f(x))
    w = r(3, 3, 2, 2)
    check_op(lambda x: ops.tanh(ops.conv2d(x, Tensor(w), padding="same")) + x, r(1, 4, 4, 2))
    check_op(lambda x: ops.concatenate([x, ops.sigmoid(x * 2.0)], axis=-1) * x.sum(), r(2, 3))


def test_no_grad_and_accumulation_and_freeing():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with no_grad():
        b = a * 3
    assert not b.requires_grad and b._node is None
    (a * a).sum().backward()
    (a * 3).sum().backward()
    np.testing.assert_allclose(a.grad, [2 + 3, 4 + 3])  # accumulated until zero_grad
    a.zero_grad()
    y = (a * a).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already backpropagated"):
        y.backward()
    with pytest.raises(ValueError, match="scalar"):
        (a * 1).backward()


def test_saved_activations_freed_after_backward():
    x = Tensor(r(1, 4, 4, 1), requires_grad=True)
    y = ops.conv2d(x, Tensor(r(3, 3, 1, 1)))
    node = y._node
    assert hasattr(node, "x")
    y.sum().backward()
    assert not hasattr(node, "x") and y._node is None


def test_dropout_is_seeded_inverted_and_off_at_inference():
    x = Tensor(np.ones((1000,)), requires_grad=True)
    y = ops.dropout(x, 0.25, np.random.default_rng(0), training=True)
    kept = y.data != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y.data[kept], 1 / 0.75)
    y2 = ops.dropout(x, 0.25, np.random.default_rng(0), training=True)
    np.testing.assert_array_equal(y.data, y2.data)
    assert ops.dropout(x, 0.25, np.random.default_rng(0), training=False) is x
    y.sum().backward()
    np.testing.assert_allclose(x.grad, y.data)


def test_cpu_backend_runs_the_same_graph():
    x, w = r(2, 5, 5, 3).astype(np.float32), r(3, 3, 3, 4).astype(np.float32)
    results = {}
    for name in ("numpy", "cpu"):
        with fc.backend(name):
            xt, wt = Tensor(x, requires_grad=True), Variable(w)
            loss = ops.softmax_cross_entropy(ops.global_avg_pool2d(ops.relu(ops.conv2d(xt, wt, padding="same"))),
                                             np.array([1, 3])).mean()
            loss.backward()
            results[name] = (float(loss), wt.grad, xt.grad)
    assert results["cpu"][0] == pytest.approx(results["numpy"][0], rel=1e-5)
    np.testing.assert_allclose(results["cpu"][1], results["numpy"][1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(results["cpu"][2], results["numpy"][2], rtol=1e-4, atol=1e-6)
