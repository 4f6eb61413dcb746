"""Fused passes: conv + bias + activation in one kernel (issue 9).

The fused result must equal the unfused composition: conv with bias, then the activation.
Native float32 against the float64 oracle: rtol 1e-4, atol 1e-5 * max|ref| (as in
test_native_conv). Gradients through the fused autograd op: float64 central differences on
the numpy backend (rtol 1e-5).
"""
import numpy as np
import pytest

import fastconv as fc
from fastconv import _C, functional as F, reference as R
from fastconv.autograd import Tensor, ops
from fastconv.reference.gradcheck import check_grad

import seeds

ACTS = ["linear", "relu", "sigmoid", "tanh"]
_NP_ACT = {"linear": lambda z: z, "relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
           "tanh": np.tanh}

# (n, h, w, cin, cout, k, strides, padding, groups): im2col, pointwise, grouped, depthwise paths
CASES = [(2, 9, 7, 3, 5, 3, 1, "same", 1), (1, 5, 6, 4, 6, 1, 1, "valid", 1), (2, 8, 8, 4, 6, 3, 2, "same", 2),
         (2, 7, 9, 3, 3, 3, 1, "same", 3), (3, 4, 4, 2, 8, 2, 1, "same", 1)]


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("case", CASES)
def test_fused_conv_activation_matches_the_composition(act, case):
    n, h, w, cin, cout, k, s, padding, groups = case
    rng = np.random.default_rng(seeds.seed_of(act, case))
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((k, k, cin // groups, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    conv = dict(strides=s, padding=padding, groups=groups)
    with fc.backend("numpy"):
        ref = _NP_ACT[act](F.conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), **conv))
        _close(F.conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), activation=act, **conv), ref)
    _close(F.conv2d(x, wt, b, activation=act, **conv), ref)


def test_fused_conv_activation_validates_the_name():
    x, w = np.ones((1, 4, 4, 1), np.float32), np.ones((3, 3, 1, 2), np.float32)
    with pytest.raises(ValueError, match="activation"):
        F.conv2d(x, w, activation="gelu")
    with pytest.raises(ValueError, match="activation"):
        _C.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, "swish")
    with pytest.raises(TypeError, match="activation"):
        _C.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, 3)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
def test_fused_conv_activation_gradients(act):
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 5, 4, 2)), rng.standard_normal((3, 2, 2, 3)), rng.standard_normal(3)
    conv = dict(strides=(2, 1), padding="same", activation=act)
    with fc.backend("numpy"):
        dy = rng.standard_normal(F.conv2d(x, w, b, **conv).shape)
        tx, tw, tb = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
        (ops.conv2d(tx, tw, tb, **conv) * Tensor(dy)).sum().backward()

        def loss(i):
            def f(value):
                args = [x, w, b]
                args[i] = value
                return float((F.conv2d(*args, **conv) * dy).sum())
            return f
        for i, (arr, t) in enumerate([(x, tx), (w, tw), (b, tb)]):
            check_grad(loss(i), arr, t.grad, name=f"input {i}", skip_kinks=act == "relu", rtol=1e-5, atol=1e-7)


def test_conv2d_layer_runs_its_activation_inside_the_kernel(monkeypatch):
    calls = []
    monkeypatch.setattr(ops, "bias_activation", lambda *a, **k: calls.append(a) or a[0])
    layer = fc.layers.Conv2D(4, 3, padding="same", activation="relu")
    y = layer(np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32))
    assert not calls and float(y.data.min()) >= 0.0


# ---- layer chains in models (engine/fusion.py) -------------------------------------------
from fastconv import layers, models  # noqa: E402
from fastconv.engine import fusion  # noqa: E402


def _randomise_bn(model, rng):
    for layer in model._walk():
        if type(layer) is layers.BatchNormalization:
            c = layer.moving_mean.shape
            layer.moving_mean.assign(rng.standard_normal(c).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype(np.float32))
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
            layer.beta.assign(rng.standard_normal(c).astype(np.float32))


@pytest.fixture
def no_fusion_after():
    yield
    fc.set_fusion(True)


def _outputs(model, x, training):
    out = []
    for enabled in (True, False):
        fc.set_fusion(enabled)
        out.append(model(x, training=training).data)
    fc.set_fusion(True)
    return out


def _check_gradients_equal(model, x, training):
    """Gradients of sum(model(x)**2) for every trainable weight, fusion on and off, agree."""
    grads = []
    for enabled in (True, False):
        fc.set_fusion(enabled)
        for v in model.trainable_weights:
            v.grad = None
        (model(x, training=training) ** 2).sum().backward()
        grads.append([np.array(v.grad) for v in model.trainable_weights])
    fc.set_fusion(True)
    for g_fused, g_plain in zip(*grads):
        _close(g_fused, g_plain)


def _seq():
    return models.Sequential([
        layers.Input((9, 7, 3)),
        layers.Conv2D(6, 3, padding="same", name="c1"), layers.BatchNormalization(name="bn1"), layers.ReLU(name="r1"),
        layers.Conv2D(5, 3, strides=2, name="c2"), layers.Activation("relu", name="a2"),
        layers.BatchNormalization(name="bn3"), layers.ReLU(name="r3"),
        layers.Conv2D(4, 1, activation="tanh", name="c4"), layers.BatchNormalization(name="bn4"),
        layers.ReLU(max_value=6.0, name="r4"),  # not plain ReLU: stays out of any chain
    ])


def test_sequential_plan_names_the_chains_per_mode():
    m = _seq()
    assert m.fusion_plan(False) == ["c1 + bn1 + r1", "c2 + a2", "bn3 + r3"]
    # In training the batch norm needs batch statistics: it cannot be folded into the conv.
    assert m.fusion_plan(True) == ["bn1 + r1", "c2 + a2", "bn3 + r3"]
    fc.set_fusion(False)
    try:
        assert m.fusion_plan(False) == []
    finally:
        fc.set_fusion(True)


@pytest.mark.parametrize("training", [False, True])
def test_fused_sequential_equals_unfused(training):
    rng = np.random.default_rng(3)
    m = _seq()
    _randomise_bn(m, rng)
    x = rng.standard_normal((2, 9, 7, 3)).astype(np.float32)
    fused, plain = _outputs(m, x, training)
    _close(fused, plain)


@pytest.mark.parametrize("training", [False, True])
def test_fused_gradients_equal_unfused(training):
    # training=False folds BN into the conv: gradients must still reach kernel, gamma, beta.
    # training=True runs BN + ReLU as one kernel whose backward recomputes the relu mask.
    rng = np.random.default_rng(5)
    m = _seq()
    _randomise_bn(m, rng)
    x = rng.standard_normal((3, 9, 7, 3)).astype(np.float32)
    _check_gradients_equal(m, x, training=training)


def test_functional_fuses_only_single_consumer_links():
    inp = layers.Input((8, 8, 3))
    a = layers.Conv2D(4, 3, padding="same", name="a")(inp)
    b = layers.BatchNormalization(name="bn_a")(a)
    c = layers.ReLU(name="relu_a")(b)
    d = layers.Conv2D(4, 3, padding="same", name="d")(c)   # d feeds two layers: no chain from d
    e = layers.BatchNormalization(name="bn_d")(d)
    out = layers.Add(name="join")([e, d])
    f = layers.ReLU(name="relu_out")(out)
    m = models.Model(inp, [f, layers.BatchNormalization(name="bn_c")(c)])
    # c, the chain's last output, may feed several layers; d's output feeds two, so d + bn_d
    # would need d's unnormalised output twice: no chain there.
    assert m.fusion_plan(False) == ["a + bn_a + relu_a", "join + relu_out"]
    rng = np.random.default_rng(1)
    _randomise_bn(m, rng)
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    for training in (False, True):
        outs = []
        for enabled in (True, False):
            fc.set_fusion(enabled)
            outs.append([t.data for t in m(x, training=training)])
        fc.set_fusion(True)
        for got, ref in zip(*outs):
            _close(got, ref)


def test_frozen_batch_norm_folds_in_training_mode():
    m = _seq()
    m.layers[1].trainable = False  # Keras 3: a frozen BN runs on its moving statistics
    assert m.fusion_plan(True)[0] == "c1 + bn1 + r1"


def test_zoo_blocks_run_fused_chains(monkeypatch):
    calls = []
    original = fusion.Chain.__call__
    monkeypatch.setattr(fusion.Chain, "__call__", lambda self, *a: calls.append(self.describe()) or original(self, *a))
    rng = np.random.default_rng(2)
    m = models.resnet18((16, 16, 3), 5, stem="cifar")
    _randomise_bn(m, rng)
    x = rng.standard_normal((2, 16, 16, 3)).astype(np.float32)
    fused, plain = _outputs(m, x, False)
    assert calls.count("Conv2D + BatchNormalization + ReLU") >= 8
    _close(fused, plain)


def test_set_fusion_rejects_non_bools():
    with pytest.raises(TypeError, match="enabled"):
        fc.set_fusion("yes")


# ---- batch norm + relu in one kernel -----------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 5, 3, 7), (1, 1, 1, 4), (6, 33), (3, 4, 4, 64)])
def test_batch_norm_relu_kernels_match_the_oracle(shape):
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    c = shape[-1]
    x = rng.standard_normal(shape).astype(np.float32) * 2 + 0.3
    gamma, beta = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    x64, g64, b64, dy64 = (a.astype(np.float64) for a in (x, gamma, beta, dy))
    y, mean, var, inv_std = _C.batch_norm_forward_train(x, gamma, beta, 1e-3, True)
    ry, rmean, rvar, rinv = R.batch_norm_forward_train(x64, g64, b64, 1e-3, relu=True)
    _close(y, ry)
    assert float(y.min()) >= 0.0
    got = _C.batch_norm_backward(dy, x, gamma, mean, inv_std, beta)
    ref = R.batch_norm_backward(dy64, x64, g64, rmean, rinv, relu_beta=b64)
    for a, b in zip(got, ref):
        _close(a, b)
    # the fused backward equals the plain backward of the relu-masked gradient
    plain = R.batch_norm_backward(dy64 * (ry > 0), x64, g64, rmean, rinv)
    for a, b in zip(ref, plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    yi = _C.batch_norm_forward_inference(x, gamma, beta, mean, var, 1e-3, True)
    _close(yi, R.batch_norm_forward_inference(x64, g64, b64, rmean, rvar, 1e-3, relu=True))


def test_batch_norm_relu_gradients_by_finite_differences():
    rng = np.random.default_rng(11)
    x, gamma, beta = rng.standard_normal((4, 3, 5)), rng.uniform(0.5, 1.5, 5), rng.standard_normal(5)
    dy = rng.standard_normal((4, 3, 5))
    with fc.backend("numpy"):
        tx, tg, tb = (Tensor(a, requires_grad=True) for a in (x, gamma, beta))
        mm, mv = fc.Variable(np.zeros(5), trainable=False), fc.Variable(np.ones(5), trainable=False)
        (ops.batch_norm(tx, tg, tb, mm, mv, True, relu=True) * Tensor(dy)).sum().backward()

        def loss(i):
            def f(value):
                args = [x, gamma, beta]
                args[i] = value
                return float((F.batch_norm_train(*args, relu=True)[0] * dy).sum())
            return f
        for i, (arr, t) in enumerate([(x, tx), (gamma, tg), (beta, tb)]):
            check_grad(loss(i), arr, t.grad, name=f"input {i}", skip_kinks=True, rtol=1e-5, atol=1e-7)


def test_batch_norm_relu_beta_is_validated():
    x = np.ones((2, 3), np.float32)
    y, mean, var, inv = _C.batch_norm_forward_train(x, None, None, 1e-3, True)
    with pytest.raises(ValueError, match="relu_beta"):
        _C.batch_norm_backward(x, x, None, mean, inv, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="relu_beta"):
        F.batch_norm_backward(x, x, np.ones(3, np.float32), mean, inv, relu_beta=np.zeros(2, np.float32))


def test_zero_padding_becomes_the_conv_padding():
    rng = np.random.default_rng(13)
    m = models.Sequential([
        layers.Input((9, 8, 3)),
        layers.ZeroPadding2D(((1, 2), (0, 3)), name="zp"), layers.Conv2D(4, 3, strides=2, name="cv"),
        layers.BatchNormalization(name="bn"), layers.ReLU(name="r"),
        layers.ZeroPadding2D(1, name="zp2"), layers.Conv2D(4, 3, padding="same", name="cs"),  # 'same': not fused
    ])
    assert m.fusion_plan(False) == ["zp + cv + bn + r"]
    assert m.fusion_plan(True) == ["zp + cv", "bn + r"]
    _randomise_bn(m, rng)
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    for training in (False, True):
        fused, plain = _outputs(m, x, training)
        _close(fused, plain)
    _check_gradients_equal(m, x, training=True)


# ---- residual add + relu -------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
def test_add_activation_matches_the_composition(act):
    rng = np.random.default_rng(21)
    a, b = rng.standard_normal((3, 5, 4, 7)).astype(np.float32), rng.standard_normal((3, 5, 4, 7)).astype(np.float32)
    ref = _NP_ACT[act](a.astype(np.float64) + b)
    _close(F.add_activation(a, b, act), ref)
    _close(_C.add_act_forward(np.zeros(0, np.float32), np.zeros(0, np.float32), act), np.zeros(0))
    with fc.backend("numpy"):
        _close(F.add_activation(a.astype(np.float64), b.astype(np.float64), act), ref)


def test_add_activation_validates_shapes():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="b must have shape"):
        _C.add_act_forward(a, np.ones((3, 2), np.float32), "relu")
    with pytest.raises(ValueError, match="shape of a"):
        F.add_activation(a, np.ones((2, 4), np.float32), "relu")


def test_add_activation_gradients():
    rng = np.random.default_rng(3)
    a, b, dy = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    with fc.backend("numpy"):
        ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
        (ops.add_activation(ta, tb, "tanh") * Tensor(dy)).sum().backward()
        check_grad(lambda v: float((F.add_activation(v, b, "tanh") * dy).sum()), a, ta.grad, rtol=1e-5, atol=1e-7)
        check_grad(lambda v: float((F.add_activation(a, v, "tanh") * dy).sum()), b, tb.grad, rtol=1e-5, atol=1e-7)
