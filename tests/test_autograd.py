"""Autograd: every differentiable op by float64 central differences (numpy backend), graph
reuse, no_grad, accumulation, freeing, moving statistics."""
import numpy as np
import pytest

import fastconv as fc
from fastconv.autograd import Tensor, Variable, no_grad, ops
from fastconv.reference.gradcheck import check_grad

import seeds


@pytest.fixture(autouse=True)
def _numpy_backend():
    # float64 finite differences need the NumPy oracle backend (it keeps the dtype).
    with fc.backend("numpy"):
        yield


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


@pytest.fixture(autouse=True)
def _per_test_R(request):
    # Each test draws from its own generator, seeded by its name, so it sees the same numbers
    # run alone (-k) or in the full suite. (Parameters drawn at import come from R as seeded
    # above: import order is fixed, so they reproduce too.)
    global R
    R = seeds.per_test_rng(request)


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


def test_batch_norm_without_scale_center_and_under_no_grad():
    x = r(5, 3)
    mm, mv = Variable(np.zeros(3), trainable=False), Variable(np.ones(3), trainable=False)
    check_op(lambda x: ops.batch_norm(x, None, None, mm, mv, training=True), x, rtol=1e-4, atol=1e-6)
    mm2, mv2 = Variable(np.ones(3), trainable=False), Variable(np.ones(3), trainable=False)
    with no_grad():  # no graph recorded: the moving statistics are still updated
        y = ops.batch_norm(Tensor(x), None, None, mm2, mv2, training=True, momentum=0.5)
    np.testing.assert_allclose(mm2.data, 0.5 + 0.5 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(mv2.data, 0.5 + 0.5 * x.var(0), rtol=1e-12)
    np.testing.assert_allclose(y.data, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), rtol=1e-10)


def test_moving_statistics_over_two_steps_by_hand():
    x1, x2 = np.array([[1.0, 2.0], [3.0, 6.0]]), np.array([[0.0, 0.0], [2.0, 4.0]])
    mm, mv = Variable(np.zeros(2), trainable=False), Variable(np.ones(2), trainable=False)
    g, b = Variable(np.ones(2)), Variable(np.zeros(2))
    for x in (x1, x2):
        ops.batch_norm(Tensor(x), g, b, mm, mv, training=True, momentum=0.99)
    # step 1: mean [2, 4], var [1, 4]; step 2: mean [1, 2], var [1, 4]
    np.testing.assert_allclose(mm.data, [(0.01 * 2) * 0.99 + 0.01 * 1, (0.01 * 4) * 0.99 + 0.01 * 2])
    np.testing.assert_allclose(mv.data, [(0.99 + 0.01) * 0.99 + 0.01, (0.99 + 0.04) * 0.99 + 0.04])


def test_dropout_gradient_and_rate_zero():
    rng = np.random.default_rng(3)
    mask_rng = lambda: np.random.default_rng(7)  # noqa: E731 - same mask for every evaluation
    check_op(lambda x: ops.dropout(x, 0.5, mask_rng(), training=True) * x, r(4, 5), seed=rng.integers(9))
    x = Tensor(r(3))
    assert ops.dropout(x, 0.0, mask_rng(), training=True) is x
    with pytest.raises(ValueError, match="rate"):
        ops.dropout(x, 1.0, mask_rng(), training=True)


def test_intermediate_grads_are_not_kept():
    x = Tensor(r(3), requires_grad=True)
    h = x.exp()
    (h * 2).sum().backward()
    assert h.grad is None
    np.testing.assert_allclose(x.grad, 2 * np.exp(x.data))


def test_second_root_through_a_freed_graph_raises():
    x = Tensor(r(3), requires_grad=True)
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="already backpropagated"):
        (h * 2).sum().backward()


def test_deep_chain_backward_is_iterative():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):  # far beyond Python's recursion limit
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 5000], rtol=1e-10)


def test_conv_skips_dx_when_the_input_needs_no_grad(monkeypatch):
    calls = []
    real = fc.functional.conv2d_backward

    def spy(*args, **kwargs):
        calls.append(kwargs["need_dx"])
        return real(*args, **kwargs)

    monkeypatch.setattr(fc.functional, "conv2d_backward", spy)
    x, w = Tensor(r(1, 4, 4, 2)), Variable(r(3, 3, 2, 2))
    ops.conv2d(x, w, padding="same").sum().backward()
    assert calls == [False] and x.grad is None
    # dw of sum(conv(x, w)) = sum over output positions of the input patch
    expected = real(np.ones((1, 4, 4, 2)), x.data, w.data, padding="same")[1]
    np.testing.assert_allclose(w.grad, expected)


def test_variable_assign_and_trainable():
    v = Variable(np.zeros(3), name="v")
    data = v.data
    v.assign([1.0, 2.0, 3.0])
    assert v.data is data and v.requires_grad
    np.testing.assert_array_equal(v.value, [1, 2, 3])
    v.trainable = False
    assert not v.requires_grad
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        v.assign(np.zeros(2))
