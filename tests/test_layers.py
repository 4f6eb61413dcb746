"""Layers: Keras argument semantics, output shapes vs hand computation, parameter counts,
forward values vs plain NumPy, and every gradient (input and weights) by float64 central
differences on the numpy backend."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import layers
from fastconv.autograd import Tensor
from fastconv.reference.gradcheck import check_grad


@pytest.fixture(autouse=True)
def _numpy(numpy_backend):
    fc.set_seed(0)
    yield


def out_shape(layer, shape):
    """compute_output_shape and the real forward shape must agree; returns the former."""
    declared = layer.compute_output_shape((None,) + shape)
    y = layer(np.random.default_rng(0).standard_normal((2,) + shape))
    assert y.shape == (2,) + tuple(declared[1:]), (layer.name, y.shape, declared)
    return declared


# -- shapes --------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, in_shape, expected", [
    (lambda: layers.Conv2D(8, 3), (7, 7, 2), (None, 5, 5, 8)),
    (lambda: layers.Conv2D(8, 3, strides=2, padding="same"), (7, 7, 2), (None, 4, 4, 8)),  # ceil(7/2)
    (lambda: layers.Conv2D(8, (3, 1), strides=(2, 1), padding="same"), (8, 5, 2), (None, 4, 5, 8)),
    (lambda: layers.Conv2D(8, 3, strides=2), (7, 8, 2), (None, 3, 3, 8)),  # floor((7-3)/2)+1
    (lambda: layers.Conv2D(4, 3, dilation_rate=2), (9, 9, 2), (None, 5, 5, 4)),  # 9-(3-1)*2
    (lambda: layers.Conv2D(4, 3, groups=2), (6, 6, 4), (None, 4, 4, 4)),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", strides=2), (5, 5, 3), (None, 3, 3, 6)),
    (lambda: layers.SeparableConv2D(5, 3, strides=2), (9, 9, 3), (None, 4, 4, 5)),
    (lambda: layers.MaxPooling2D(2), (7, 7, 3), (None, 3, 3, 3)),
    (lambda: layers.MaxPool2D(3, strides=2, padding="same"), (7, 7, 3), (None, 4, 4, 3)),
    (lambda: layers.AveragePooling2D((2, 3)), (6, 9, 1), (None, 3, 3, 1)),
    (lambda: layers.GlobalAveragePooling2D(), (5, 4, 6), (None, 6)),
    (lambda: layers.GlobalMaxPooling2D(keepdims=True), (5, 4, 6), (None, 1, 1, 6)),
    (lambda: layers.Dense(7), (3, 5), (None, 3, 7)),  # Dense acts on the last axis
    (lambda: layers.BatchNormalization(), (4, 4, 3), (None, 4, 4, 3)),
    (lambda: layers.Flatten(), (5, 5, 16), (None, 400)),
    (lambda: layers.Reshape((-1, 2)), (3, 4), (None, 6, 2)),
    (lambda: layers.ZeroPadding2D(((1, 2), (0, 3))), (4, 4, 2), (None, 7, 7, 2)),
    (lambda: layers.Softmax(), (4,), (None, 4)),
    (lambda: layers.Dropout(0.5), (4,), (None, 4)),
])
def test_output_shapes(layer, in_shape, expected):
    assert out_shape(layer(), in_shape) == expected


def test_symbolic_shapes_match_hand_computation():
    x = layers.Input((32, 32, 3))
    y = layers.Conv2D(16, 5, strides=2, padding="same")(x)       # ceil(32/2) = 16
    y = layers.MaxPooling2D(3, strides=2)(y)                      # floor((16-3)/2)+1 = 7
    y = layers.ZeroPadding2D(1)(y)                                # 9
    y = layers.DepthwiseConv2D(3, strides=2, padding="same")(y)   # ceil(9/2) = 5
    assert y.shape == (None, 5, 5, 16)


# -- parameter counts ----------------------------------------------------------------------
@pytest.mark.parametrize("layer, in_shape, params, nontrainable", [
    (lambda: layers.Conv2D(16, 3), (28, 28, 3), 3 * 3 * 3 * 16 + 16, 0),
    (lambda: layers.Conv2D(16, (5, 3), use_bias=False), (9, 9, 8), 5 * 3 * 8 * 16, 0),
    (lambda: layers.Conv2D(12, 3, groups=4), (9, 9, 8), 3 * 3 * 2 * 12 + 12, 0),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2), (9, 9, 8), 3 * 3 * 8 * 2 + 16, 0),
    (lambda: layers.SeparableConv2D(10, 3), (9, 9, 8), 3 * 3 * 8 + 8 * 10 + 10, 0),
    (lambda: layers.Dense(520), (784,), 784 * 520 + 520, 0),
    (lambda: layers.BatchNormalization(), (64,), 256, 128),
    (lambda: layers.BatchNormalization(center=False), (4, 4, 8), 24, 16),
])
def test_param_counts(layer, in_shape, params, nontrainable):
    lay = layer()
    lay.build((None,) + in_shape)
    assert lay.count_params() == params
    assert sum(w.size for w in lay.non_trainable_weights) == nontrainable
    assert sum(w.size for w in lay.trainable_weights) == params - nontrainable


def test_weight_shapes_follow_keras_layouts():
    d = layers.DepthwiseConv2D(3, depth_multiplier=2)
    d.build((None, 8, 8, 5))
    assert d.depthwise_kernel.shape == (3, 3, 5, 2) and d.bias.shape == (10,)
    c = layers.Conv2D(6, (2, 3), groups=3)
    c.build((None, 8, 8, 9))
    assert c.kernel.shape == (2, 3, 3, 6)
    bn = layers.BatchNormalization()
    bn.build((None, 4))
    assert [w.name.split("/")[-1] for w in bn.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.trainable for w in bn.weights] == [True, True, False, False]


def test_auto_names_unique_per_class():
    a, b, p = layers.Conv2D(1, 1), layers.Conv2D(1, 1), layers.MaxPooling2D()
    assert a.name.startswith("conv2d") and b.name.startswith("conv2d_") and a.name != b.name
    assert p.name.startswith("max_pooling2d")
    assert layers.BatchNormalization(name="bn").name == "bn"


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="groups"):
        layers.Conv2D(6, 3, groups=4)
    with pytest.raises(ValueError, match="rate"):
        layers.Dropout(1.0)
    with pytest.raises(ValueError, match="activation"):
        layers.Dense(3, activation="swishy")
    with pytest.raises(TypeError, match="input_dim"):
        layers.Dense(3, input_dim=4)
    d = layers.Dense(3)
    d(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        d(np.zeros((2, 5)))
    c = layers.Conv2D(2, 3)
    c(np.zeros((1, 5, 5, 3)))
    with pytest.raises(ValueError, match=r"\(1, 5, 5, 4\)"):
        c(np.zeros((1, 5, 5, 4)))


# -- forward values ------------------------------------------------------------------------
def test_dense_and_activations_values(rng):
    x = rng.standard_normal((4, 6))
    for name, fn in [("relu", lambda z: np.maximum(z, 0)), ("sigmoid", lambda z: 1 / (1 + np.exp(-z))),
                     ("tanh", np.tanh), ("linear", lambda z: z),
                     ("softmax", lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True))]:
        d = layers.Dense(3, activation=name, dtype="float64", bias_initializer="ones")
        y = d(x).numpy()
        np.testing.assert_allclose(y, fn(x @ d.kernel.numpy() + 1.0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(layers.Activation(name, dtype="float64")(x).numpy(), fn(x), rtol=1e-12)


def test_conv2d_matches_reference(rng):
    from fastconv.reference import conv2d_forward_naive
    x = rng.standard_normal((2, 7, 6, 4))
    c = layers.Conv2D(6, 3, strides=2, padding="same", groups=2, activation="relu", dtype="float64",
                      bias_initializer="ones")
    y = c(x).numpy()
    # TF 'same' for 7 rows, k3, s2: out 4, total pad 2 -> (1, 1); 6 cols: out 3, total 1 -> (0, 1).
    ref = conv2d_forward_naive(x, c.kernel.numpy(), c.bias.numpy(), (2, 2), (1, 1, 0, 1), (1, 1), 2)
    np.testing.assert_allclose(y, np.maximum(ref, 0), rtol=1e-12, atol=1e-12)


def test_separable_is_depthwise_then_pointwise(rng):
    x = rng.standard_normal((1, 5, 5, 3))
    s = layers.SeparableConv2D(4, 3, depth_multiplier=2, dtype="float64")
    y = s(x).numpy()
    dk, pk = s.depthwise_kernel.numpy(), s.pointwise_kernel.numpy()
    mid = np.zeros((1, 3, 3, 6))
    for i in range(3):
        for j in range(3):
            patch = x[0, i:i + 3, j:j + 3, :]                       # (3, 3, C)
            mid[0, i, j] = np.einsum("hwc,hwcm->cm", patch, dk).reshape(-1)   # channel c*M + m
    np.testing.assert_allclose(y, mid @ pk[0, 0], rtol=1e-12, atol=1e-12)


def test_batch_norm_train_updates_moving_stats_keras_formula(rng):
    x = rng.standard_normal((16, 3)) * 2 + 5
    bn = layers.BatchNormalization(momentum=0.9, dtype="float64")
    y = bn(x, training=True).numpy()
    mean, var = x.mean(0), x.var(0)  # biased variance, as Keras
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-12)
    # inference uses the moving statistics and leaves them alone
    y2 = bn(x).numpy()
    np.testing.assert_allclose(y2, (x - 0.1 * mean) / np.sqrt(0.9 + 0.1 * var + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * mean, rtol=1e-12)


def test_frozen_batch_norm_runs_in_inference_mode(rng):
    x = rng.standard_normal((8, 4, 4, 2)) + 3
    bn = layers.BatchNormalization(dtype="float64")
    bn.build((None, 4, 4, 2))
    bn.trainable = False
    y = bn(x, training=True).numpy()
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3), rtol=1e-12)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 0)
    assert bn.trainable_weights == [] and len(bn.non_trainable_weights) == 4


def test_batch_norm_on_a_middle_axis(rng):
    x = rng.standard_normal((5, 3, 4))
    bn = layers.BatchNormalization(axis=1, dtype="float64")
    y = bn(x, training=True).numpy()
    mean, var = x.mean((0, 2), keepdims=True), x.var((0, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-10, atol=1e-10)
    assert bn.gamma.shape == (3,)


def test_dropout_scaling_inference_and_seed():
    x = np.ones((200, 50))
    d = layers.Dropout(0.25, dtype="float64")
    np.testing.assert_array_equal(d(x).numpy(), x)  # inference: identity
    fc.set_seed(3)
    y = d(x, training=True).numpy()
    assert set(np.unique(y)) <= {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.02
    fc.set_seed(3)
    np.testing.assert_array_equal(d(x, training=True).numpy(), y)  # same seed, same mask
    a = layers.Dropout(0.5, seed=7)(x, training=True).numpy()
    b = layers.Dropout(0.5, seed=7)(x, training=True).numpy()
    np.testing.assert_array_equal(a, b)


def test_reshape_flatten_padding_merge_values(rng):
    x = rng.standard_normal((2, 3, 4, 2))
    np.testing.assert_array_equal(layers.Flatten(dtype="float64")(x).numpy(), x.reshape(2, -1))
    np.testing.assert_array_equal(layers.Reshape((4, 6), dtype="float64")(x).numpy(), x.reshape(2, 4, 6))
    p = layers.ZeroPadding2D(((1, 0), (2, 1)), dtype="float64")(x).numpy()
    np.testing.assert_array_equal(p, np.pad(x, ((0, 0), (1, 0), (2, 1), (0, 0))))
    np.testing.assert_array_equal(layers.Concatenate(axis=1, dtype="float64")([x, x]).numpy(),
                                  np.concatenate([x, x], 1))
    np.testing.assert_array_equal(layers.Add(dtype="float64")([x, 2 * x, x]).numpy(), 4 * x)
    s = layers.Softmax(axis=1, dtype="float64")(x).numpy()
    np.testing.assert_allclose(s.sum(1), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        layers.Add()([np.zeros((1, 3)), np.zeros((1, 4))])


def test_relu_variants(rng):
    x = np.array([[-2.0, -0.5, 0.5, 3.0, 8.0]])
    np.testing.assert_allclose(layers.ReLU(dtype="float64")(x).numpy(), [[0, 0, 0.5, 3, 8]])
    np.testing.assert_allclose(layers.ReLU(max_value=6.0, dtype="float64")(x).numpy(), [[0, 0, 0.5, 3, 6]])
    np.testing.assert_allclose(layers.ReLU(negative_slope=0.1, dtype="float64")(x).numpy(),
                               [[-0.2, -0.05, 0.5, 3, 8]])


# -- gradients by finite differences (float64, numpy backend) ------------------------------
GRAD_CASES = [
    ("dense_relu", lambda: layers.Dense(3, activation="relu", bias_initializer="ones"), (4, 5)),
    ("dense_softmax_3d", lambda: layers.Dense(3, activation="softmax"), (2, 3, 4)),
    ("conv_same_s2", lambda: layers.Conv2D(3, 3, strides=2, padding="same", activation="tanh"), (2, 5, 5, 2)),
    ("conv_groups_dil", lambda: layers.Conv2D(4, 2, dilation_rate=2, groups=2, activation="sigmoid"), (1, 5, 5, 4)),
    ("depthwise", lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (1, 4, 4, 2)),
    ("separable", lambda: layers.SeparableConv2D(3, 2, activation="relu"), (1, 4, 4, 2)),
    ("maxpool_same", lambda: layers.MaxPooling2D(2, padding="same"), (1, 5, 5, 2)),
    ("avgpool", lambda: layers.AveragePooling2D(3, strides=2, padding="same"), (1, 5, 5, 2)),
    ("gap", lambda: layers.GlobalAveragePooling2D(), (2, 3, 3, 2)),
    ("gmp", lambda: layers.GlobalMaxPooling2D(), (2, 3, 3, 2)),
    ("bn", lambda: layers.BatchNormalization(), (6, 3)),
    ("bn_axis1", lambda: layers.BatchNormalization(axis=1), (4, 3, 2)),
    ("flatten", lambda: layers.Flatten(), (2, 2, 2, 2)),
    ("reshape", lambda: layers.Reshape((4, -1)), (2, 2, 4)),
    ("zeropad", lambda: layers.ZeroPadding2D((1, 2)), (1, 2, 3, 2)),
    ("softmax", lambda: layers.Softmax(), (3, 4)),
    ("relu6_leaky", lambda: layers.ReLU(max_value=1.0, negative_slope=0.2), (3, 4)),
    ("activation_tanh", lambda: layers.Activation("tanh"), (3, 4)),
]


def _check_layer_grads(layer, x, training):
    rng = np.random.default_rng(5)
    for w in layer.weights:
        w.zero_grad()  # .grad accumulates across backward passes
    xt = Tensor(x, requires_grad=True)
    y = layer(xt, training=training)
    dy = rng.standard_normal(y.shape)
    (y * Tensor(dy)).sum().backward()

    def f(xv):
        return float(np.sum(layer(Tensor(xv), training=training).numpy() * dy))
    check_grad(f, x, xt.grad, rtol=1e-5, atol=1e-7, skip_kinks=True, name=f"{layer.name}/input")
    for w in layer.trainable_weights:
        orig = w.data.copy()

        def fw(wv, w=w):
            w.data[...] = wv
            return f(x)
        check_grad(fw, orig, w.grad, rtol=1e-5, atol=1e-7, skip_kinks=True, name=w.name)
        w.data[...] = orig


@pytest.mark.parametrize("name, make, shape", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradients_match_finite_differences(name, make, shape):
    layer = make()
    layer.dtype = "float64"
    x = np.random.default_rng(11).standard_normal(shape)
    layer.build((None,) + shape[1:])
    wrng = np.random.default_rng(2)
    for w in layer.weights:  # non-trivial weights: ones/zeros (BN, biases) would hide errors
        w.data[...] = wrng.uniform(0.5, 1.5, w.shape)
    # BN in training mode would move its statistics between the probes; check it in both modes
    # with the moving statistics left as they are (momentum 1 keeps them fixed).
    if isinstance(layer, layers.BatchNormalization):
        layer.momentum = 1.0
        _check_layer_grads(layer, x, training=True)
    _check_layer_grads(layer, x, training=False)


def test_merge_gradients_with_reused_tensor(rng):
    a = rng.standard_normal((2, 3))
    at = Tensor(a, requires_grad=True)
    out = layers.Add(dtype="float64")([at, at])
    out = layers.Concatenate(dtype="float64")([out, at])
    dy = rng.standard_normal(out.shape)
    (out * Tensor(dy)).sum().backward()
    np.testing.assert_allclose(at.grad, 2 * dy[:, :3] + dy[:, 3:], rtol=1e-12)
