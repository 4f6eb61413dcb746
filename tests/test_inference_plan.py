"""The inference plan behind predict (engine/inference.py) against the plain forward.

Reference: the same model's forward on the NumPy oracle backend (`fastconv.backend("numpy")`,
where no plan runs: every layer alone, float64-accumulating reference kernels). The plan
folds batch norm into the conv kernels (a float32 rounding of kernel * s), so the tolerance is
rtol 1e-4 plus atol 1e-4 times the output's magnitude. Batch-norm statistics are random (not
the 0/1 of a fresh model), so a fold that is wrong or stale shows.
"""
import numpy as np
import pytest

import fastconv
from fastconv import layers
from fastconv.models import zoo
from fastconv.engine import inference


def _randomise_bn(model, seed):
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if type(layer) is layers.BatchNormalization and layer.built:
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, c).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype(np.float32))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0, 0.3, c).astype(np.float32))


def _all_layers(layer):
    """The layer and every layer reachable through its attributes (blocks' sublayers too)."""
    seen, out = set(), []
    stack = [layer]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        out.append(current)
        for value in vars(current).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            stack.extend(v for v in items if isinstance(v, layers.Layer))
    return out


def _oracle(model, x):
    with fastconv.backend("numpy"):
        return np.asarray(model.predict_on_batch(x))


def _plan_of(model):
    plans = model.__dict__.get("_inference_plans", {})
    assert plans, "predict did not go through an inference plan"
    return list(plans.values())[-1]


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-4 * scale)


def _x(shape, batch, seed=0):
    return np.random.default_rng(seed).standard_normal((batch,) + shape).astype(np.float32)


ZOO = {
    "resnet20": (lambda: zoo.resnet20((16, 16, 3), classes=5), (16, 16, 3)),
    "resnet18_cifar": (lambda: zoo.resnet18((16, 16, 3), classes=5, stem="cifar"), (16, 16, 3)),
    "resnet50": (lambda: zoo.resnet50((32, 32, 3), classes=5), (32, 32, 3)),
    "mobilenet": (lambda: zoo.mobilenet((32, 32, 3), classes=5, alpha=0.25), (32, 32, 3)),
    "mobilenet_v2": (lambda: zoo.mobilenet_v2((32, 32, 3), classes=5, alpha=0.35), (32, 32, 3)),
    "small_densenet": (lambda: zoo.small_densenet((16, 16, 3), classes=5), (16, 16, 3)),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_with_batch_norm_match_the_oracle(name):
    make, shape = ZOO[name]
    fastconv.set_seed(1)
    model = make()
    _randomise_bn(model, 2)
    x = _x(shape, 2)
    got = model.predict_on_batch(x)
    _close(got, _oracle(model, x))
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    _close(model.predict(x, verbose=0), _oracle(model, x))


def test_resnet_and_mobilenet_plans_fold_and_fuse():
    fastconv.set_seed(1)
    resnet = zoo.resnet18((16, 16, 3), classes=5, stem="cifar")
    resnet.predict_on_batch(_x((16, 16, 3), 1))
    steps = _plan_of(resnet).describe()
    assert "conv2_block1_1_conv + conv2_block1_1_bn + relu" in steps
    # the block's join runs inside its second conv: conv + folded BN + residual add + relu
    assert "conv2_block1_2_conv + conv2_block1_2_bn + add + relu" in steps
    assert not any("_bn" in s and "conv" not in s for s in steps)  # every BN folded
    mobile = zoo.mobilenet((32, 32, 3), classes=5, alpha=0.25)
    mobile.predict_on_batch(_x((32, 32, 3), 1))
    assert "pad + conv_dw_2 + conv_dw_2_bn + relu6" in _plan_of(mobile).describe()


@pytest.mark.parametrize("batch", [1, 64])
def test_batch_1_and_64(batch):
    fastconv.set_seed(3)
    model = zoo.resnet20((8, 8, 3), classes=4)
    _randomise_bn(model, 4)
    x = _x((8, 8, 3), batch, seed=batch)
    _close(model.predict_on_batch(x), _oracle(model, x))
    lenet = zoo.lenet5()
    xl = _x((28, 28, 1), batch, seed=batch)
    _close(lenet.predict_on_batch(xl), _oracle(lenet, xl))


def _conv_bn_net(seed=5):
    fastconv.set_seed(seed)
    inp = layers.Input((6, 6, 4))
    h = layers.Conv2D(8, 3, padding="same", name="c1")(inp)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.ReLU(6.0, name="r1")(h)
    h = layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = layers.BatchNormalization(name="bn2")(h)
    h = layers.ReLU(name="r2")(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(3, activation="softmax", name="head")(h)
    model = fastconv.Model(inp, out)
    _randomise_bn(model, seed)
    return model


def test_training_steps_reach_the_next_predict():
    model = _conv_bn_net()
    x = _x((6, 6, 4), 8)
    y = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    first = model.predict_on_batch(x)
    _close(first, _oracle(model, x))
    model.compile(optimizer=fastconv.optimizers.SGD(0.5), loss="categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)  # moves weights and BN moving statistics
    second = model.predict_on_batch(x)
    _close(second, _oracle(model, x))
    assert np.abs(second - first).max() > 1e-3


def test_set_weights_load_weights_and_in_place_edits_reach_the_next_predict(tmp_path):
    model = _conv_bn_net()
    x = _x((6, 6, 4), 2)
    first = model.predict_on_batch(x)
    saved = model.get_weights()
    bn = model.get_layer("bn1")
    bn.set_weights([w * 1.7 + 0.1 for w in bn.get_weights()])
    second = model.predict_on_batch(x)
    _close(second, _oracle(model, x))
    assert np.abs(second - first).max() > 1e-3
    model.get_layer("c1").kernel.data[...] *= -1.0  # in place through the storage
    third = model.predict_on_batch(x)
    _close(third, _oracle(model, x))
    assert np.abs(third - second).max() > 1e-3
    model.get_layer("bn2").moving_variance.assign(np.full(8, 3.0, np.float32))
    _close(model.predict_on_batch(x), _oracle(model, x))
    path = str(tmp_path / "w.weights.npz")
    other = _conv_bn_net(seed=9)
    other.set_weights(saved)
    other.save_weights(path)
    model.load_weights(path)
    _close(model.predict_on_batch(x), first)


def test_frozen_batch_norm_and_batch_norm_not_after_a_conv():
    fastconv.set_seed(6)
    inp = layers.Input((5, 5, 3))
    h = layers.BatchNormalization(name="bn_in")(inp)          # after the input: no conv to fold into
    a = layers.Conv2D(6, 3, padding="same", name="c1")(h)
    b = layers.BatchNormalization(name="bn_a")(a)              # c1 also feeds the add: no fold
    s = layers.Add(name="join")([a, b])
    s = layers.BatchNormalization(name="bn_add")(s)            # after an add: runs alone (+ relu)
    s = layers.ReLU()(s)
    f = layers.Flatten()(s)
    d = layers.Dense(7, name="d")(f)
    out = layers.BatchNormalization(name="bn_dense")(d)        # after a dense
    model = fastconv.Model(inp, out)
    _randomise_bn(model, 7)
    model.get_layer("bn_a").trainable = False
    x = _x((5, 5, 3), 3)
    _close(model.predict_on_batch(x), _oracle(model, x))
    steps = _plan_of(model).describe()
    assert "c1" in steps and "bn_a" in steps and "bn_in" in steps  # each alone
    assert "bn_add + relu" in steps


def test_conv_output_that_is_a_model_output_is_not_folded():
    fastconv.set_seed(8)
    inp = layers.Input((4, 4, 2))
    a = layers.Conv2D(3, 3, name="c")(inp)
    b = layers.BatchNormalization(name="bn")(a)
    model = fastconv.Model(inp, [a, b])
    _randomise_bn(model, 8)
    x = _x((4, 4, 2), 2)
    got = model.predict_on_batch(x)  # several outputs: the plain path answers
    with fastconv.backend("numpy"):
        ref = model.predict_on_batch(x)
    for g, r in zip(got, ref):
        _close(g, np.asarray(r))
    assert np.abs(got[0] - got[1]).max() > 1e-2  # the conv output is not the normalised one


def test_shared_layers():
    fastconv.set_seed(10)
    conv = layers.Conv2D(4, 3, padding="same", name="shared")
    bn = layers.BatchNormalization(name="bn")
    inp = layers.Input((6, 6, 4))
    h = layers.ReLU()(bn(conv(inp)))
    h = bn(conv(h))  # the same conv and BN again
    model = fastconv.Model(inp, layers.GlobalAveragePooling2D()(h))
    _randomise_bn(model, 10)
    x = _x((6, 6, 4), 2)
    _close(model.predict_on_batch(x), _oracle(model, x))
    assert _plan_of(model).describe()[:2] == ["shared + bn + relu", "shared + bn"]


def test_batch_norm_fixed_in_training_mode_uses_batch_statistics():
    fastconv.set_seed(11)
    inp = layers.Input((4, 4, 3))
    h = layers.Conv2D(5, 3, padding="same")(inp)
    h = layers.BatchNormalization(name="bn")(h, training=True)
    model = fastconv.Model(inp, h)
    _randomise_bn(model, 11)
    x = _x((4, 4, 3), 4)
    got = model.predict_on_batch(x)
    # batch statistics: every channel of the output has mean beta over the batch
    np.testing.assert_allclose(got.mean(axis=(0, 1, 2)), model.get_layer("bn").beta.numpy(), atol=1e-4)


def test_nan_propagates():
    model = _conv_bn_net()
    x = _x((6, 6, 4), 2)
    x[0, 2, 3, 1] = np.nan
    got = model.predict_on_batch(x)
    assert np.isnan(got[0]).all()        # the NaN reaches every output through the pooling
    assert np.isfinite(got[1]).all()
    relu6 = fastconv.Sequential([layers.Input((3, 3, 2)), layers.Conv2D(2, 1), layers.ReLU(6.0)])
    y = relu6.predict_on_batch(np.array(np.full((1, 3, 3, 2), np.nan), np.float32))
    assert np.isnan(y).all()


def test_call_with_training_false_under_no_grad_uses_the_plan_and_keeps_gradients_otherwise():
    model = _conv_bn_net()
    x = _x((6, 6, 4), 2)
    with fastconv.no_grad():
        out = model(x, training=False)
    assert isinstance(out, fastconv.Tensor)
    _close(out.data, _oracle(model, x))
    y = model(fastconv.Tensor(x), training=False)  # grad enabled: the autograd forward
    y.sum().backward()
    assert model.get_layer("c1").kernel.grad is not None


def test_fusion_off_turns_plans_off():
    model = _conv_bn_net()
    x = _x((6, 6, 4), 1)
    fastconv.set_fusion(False)
    try:
        ref = model.predict_on_batch(x)
        assert not model.__dict__.get("_inference_plans")
    finally:
        fastconv.set_fusion(True)
    _close(model.predict_on_batch(x), ref)


def test_wrong_input_shape_is_a_clear_error():
    model = _conv_bn_net()
    with pytest.raises(ValueError, match="incompatible"):
        model.predict_on_batch(_x((5, 5, 4), 1))
    model.predict_on_batch(_x((6, 6, 4), 1))
    with pytest.raises(ValueError, match="incompatible"):
        model.predict_on_batch(_x((6, 6, 3), 1))


def test_unsupported_graph_falls_back_to_the_plain_forward():
    model = zoo.lenet5()
    assert inference.predict(model, np.zeros((1, 28, 28, 1), np.int32)) is None  # not float
    out = model.predict_on_batch(np.zeros((1, 28, 28, 1), np.int32))
    assert out.shape == (1, 10)


def test_relu6_kernel_activation_matches_the_clip_and_keeps_nan():
    from fastconv import _C
    rng = np.random.default_rng(12)
    x = (4 * rng.standard_normal((2, 5, 5, 3))).astype(np.float32)
    x[0, 1, 1, 0] = np.nan
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    linear = _C.conv2d_forward(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "linear")
    capped = _C.conv2d_forward(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu6")
    np.testing.assert_array_equal(capped, np.clip(linear, 0, 6))  # np.clip keeps NaN
    assert np.isnan(capped).sum() == np.isnan(linear).sum() > 0
    z = np.array([[-1.0, 0.5, 5.9, 6.5, np.nan]], np.float32)
    np.testing.assert_array_equal(_C.bias_act_forward(z, None, "relu6"), np.clip(z, 0, 6))
    dz, _ = _C.bias_act_backward(np.ones_like(z), np.clip(z, 0, 6), "relu6", False)
    np.testing.assert_array_equal(dz[0, :4], [0, 1, 1, 0])


def _residual_net(shortcut_first, relu_layer=True):
    """x -> conv-bn -> relu -> conv-bn (+ shortcut: a 1x1 conv-bn or x itself) -> add -> relu
    -> head; `shortcut_first` puts the shortcut's nodes before the main branch's."""
    fastconv.set_seed(7)
    inp = layers.Input((7, 6, 8))
    short = None
    if shortcut_first:
        short = layers.BatchNormalization(name="s_bn")(layers.Conv2D(8, 1, name="s_conv")(inp))
    h = layers.ReLU(name="m_relu")(layers.BatchNormalization(name="m1_bn")(layers.Conv2D(8, 3, padding="same",
                                                                                        name="m1_conv")(inp)))
    h = layers.BatchNormalization(name="m2_bn")(layers.Conv2D(8, 3, padding="same", name="m2_conv")(h))
    joined = layers.Add(name="join")([short if short is not None else inp, h])
    if relu_layer:
        joined = layers.ReLU(name="join_relu")(joined)
    out = layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(joined))
    model = fastconv.Model(inp, out)
    _randomise_bn(model, 8)
    return model


@pytest.mark.parametrize("shortcut_first", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
def test_residual_add_and_relu_run_inside_the_later_conv(shortcut_first, batch):
    model = _residual_net(shortcut_first)
    x = _x((7, 6, 8), batch, seed=batch)
    _close(model.predict_on_batch(x), _oracle(model, x))
    steps = _plan_of(model).describe(layer_names=True)
    assert "m2_conv + m2_bn + add + join_relu" in steps
    assert not any(s.startswith("join") or s == "add + relu" for s in steps)
    x[0, 3, 2, 5] = np.nan  # NaN through the fused add reaches the pooled outputs of its image
    got = model.predict_on_batch(x)
    assert np.isnan(got[0]).all() and np.isfinite(got[1:]).all()


def test_residual_fusion_keeps_the_add_where_it_must():
    # The add's later input is a conv followed by a ReLU (not linear): the add stays its own step.
    fastconv.set_seed(9)
    inp = layers.Input((5, 5, 4))
    a = layers.Conv2D(4, 3, padding="same", name="a")(inp)
    b = layers.Conv2D(4, 3, padding="same", activation="relu", name="b")(inp)
    model = fastconv.Model(inp, layers.Add(name="join")([a, b]))
    x = _x((5, 5, 4), 2)
    _close(model.predict_on_batch(x), _oracle(model, x))
    assert _plan_of(model).describe()[-1] == "join"
    # A broadcasting add ((N, 1, 1, C) + the conv's (N, H, W, C)) fuses but adds after the kernel.
    fastconv.set_seed(10)
    inp = layers.Input((5, 6, 4))
    pooled = layers.GlobalAveragePooling2D(keepdims=True)(inp)
    conv = layers.Conv2D(4, 3, padding="same", name="c")(inp)
    model = fastconv.Model(inp, layers.ReLU()(layers.Add()([pooled, conv])))
    x = _x((5, 6, 4), 2)
    _close(model.predict_on_batch(x), _oracle(model, x))
    # The conv's output also used elsewhere (a second model output): no fusion.
    fastconv.set_seed(11)
    inp = layers.Input((5, 5, 4))
    c = layers.Conv2D(4, 3, padding="same", name="c")(inp)
    model = fastconv.Model(inp, layers.Add(name="join")([inp, c]))
    model2 = fastconv.Model(inp, layers.Concatenate()([layers.Add(name="join2")([inp, c]), c]))
    for m in (model, model2):
        _close(m.predict_on_batch(x[:, :5, :5]), _oracle(m, x[:, :5, :5]))
    assert "join2" in _plan_of(model2).describe()


def test_reshape_is_a_view_step():
    fastconv.set_seed(12)
    model = fastconv.Sequential([layers.Input((4, 4, 6)), layers.Conv2D(8, 1), layers.GlobalAveragePooling2D(),
                                 layers.Reshape((1, 1, 8)), layers.Conv2D(5, 1), layers.Reshape((-1,)),
                                 layers.Activation("softmax")])
    x = _x((4, 4, 6), 2)
    _close(model.predict_on_batch(x), _oracle(model, x))
    plan = _plan_of(model)
    kinds = [step.__qualname__ for step, _ in plan.steps]
    assert not any(name.startswith("_fallback_step") for name in kinds), kinds


def test_winograd_filter_kept_by_the_plan_follows_weight_changes():
    # A 3x3 stride-1 conv at batch 1 large enough for Winograd: the plan keeps its filter
    # transform (conv2d_prepare) across predicts; every way the weights change must rebuild it.
    fastconv.set_seed(12)
    inp = layers.Input((12, 12, 16))
    h = layers.Conv2D(16, 3, padding="same", name="c1")(inp)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.ReLU(name="r1")(h)
    h = layers.Conv2D(16, 3, padding="same", use_bias=False, name="c2")(h)  # no BN: the kernel itself
    h = layers.GlobalAveragePooling2D()(h)
    model = fastconv.Model(inp, h)
    _randomise_bn(model, 12)
    x = _x((12, 12, 16), 1)
    from fastconv import _C
    assert _C.conv2d_prepare(np.zeros((3, 3, 16, 16), np.float32), x.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1) is not None
    first = model.predict_on_batch(x)
    _close(first, _oracle(model, x))
    _close(model.predict_on_batch(x), first)  # the kept filters
    model.get_layer("c2").kernel.data[...] *= -0.5  # in place, a conv without BN
    second = model.predict_on_batch(x)
    _close(second, _oracle(model, x))
    assert np.abs(second - first).max() > 1e-3
    bn = model.get_layer("bn1")
    bn.set_weights([w * 1.3 + 0.2 for w in bn.get_weights()])  # the fold of c1 changes
    third = model.predict_on_batch(x)
    _close(third, _oracle(model, x))
    assert np.abs(third - second).max() > 1e-3


@pytest.mark.parametrize("activation,bias,bn", [("linear", True, False), ("relu", False, True), ("relu6", True, True),
                                                 ("relu6", False, False), ("sigmoid", True, False)])
def test_one_pixel_pointwise_conv_runs_as_a_dense_product(activation, bias, bn):
    # MobileNet's classifier: a 1x1 conv on the pooled pixel of one image is the dense kernel's
    # one-row product (_one_pixel_pointwise_step); at batch 2, or on more than one pixel, the conv.
    fastconv.set_seed(13)
    inp = layers.Input((5, 5, 6))
    h = layers.Conv2D(40, 3, padding="same", name="c0")(inp)
    h = layers.GlobalAveragePooling2D(keepdims=True)(h)
    h = layers.Conv2D(37, 1, use_bias=bias, name="preds", activation=None if activation == "relu6" else activation)(h)
    if bn:
        h = layers.BatchNormalization(name="bn")(h)
    if activation == "relu6":
        h = layers.ReLU(max_value=6.0)(h)
    model = fastconv.Model(inp, layers.Reshape((-1,))(h))
    _randomise_bn(model, 13)
    preds = model.get_layer("preds")
    preds.kernel.data[...] *= 100.0  # outputs past the cap of 6
    if bias:
        preds.bias.data[...] = np.random.default_rng(14).standard_normal(37).astype(np.float32)
    for batch in (1, 2):
        x = _x((5, 5, 6), batch, seed=batch)
        got = model.predict_on_batch(x)
        _close(got, _oracle(model, x))
        kinds = [step.__qualname__ for step, _ in _plan_of(model).steps]
        assert any(k.startswith("_one_pixel_pointwise_step") for k in kinds) == (batch == 1), kinds
        if activation == "relu6" and not bn:  # (the batch norm rescales the outputs)
            assert got.max() == 6.0 and got.min() == 0.0
    x = _x((5, 5, 6), 1, seed=3)
    x[0, 2, 2, 1] = np.nan  # reaches every pooled channel, then every output
    assert np.isnan(model.predict_on_batch(x)).all()


@pytest.mark.parametrize("activation,pads,fused", [
    ("relu", ((1, 1), (1, 1)), True),       # ResNet-50's pool1_pad -> pool1_pool
    ("relu", ((0, 2), (1, 0)), True),       # uneven padding, still inside every window
    ("linear", ((1, 1), (1, 1)), False),    # negative outputs: the zeros win at the borders
    ("relu", ((3, 0), (0, 0)), False),      # whole windows of padding (0 there, not the pool's)
])
def test_zero_padding_before_a_max_pool_of_a_relu_output(activation, pads, fused):
    fastconv.set_seed(15)
    inp = layers.Input((9, 8, 3))
    h = layers.Conv2D(6, 3, padding="same", activation=activation, name="c")(inp)
    h = layers.ZeroPadding2D(pads)(h)
    h = layers.MaxPooling2D(3, strides=2, name="pool")(h)
    model = fastconv.Model(inp, h)
    for batch in (1, 2):
        x = _x((9, 8, 3), batch, seed=batch)
        got = model.predict_on_batch(x)
        ref = _oracle(model, x)
        assert got.shape == ref.shape
        _close(got, ref)
        assert ("pad + pool" in _plan_of(model).describe()) == fused
    x = _x((9, 8, 3), 1)
    x[0, 0, 0, :] = np.nan  # the conv's corner outputs, then the windows over them
    got = model.predict_on_batch(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(_oracle(model, x)))
    assert np.isnan(got).any()
