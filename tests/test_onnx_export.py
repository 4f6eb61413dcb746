"""ONNX export (fastconv.onnx): every zoo model and every exported layer, run in onnxruntime and
compared with model.predict.

Tolerance: max |onnx - fastconv| <= 1e-4 * max(1, max |fastconv|) (relative to the output's
scale; float32 on both sides, different summation orders). Weights are randomised (biases and
BatchNormalization's gamma, beta and moving statistics too) so every parameter's placement is
checked. Skipped without onnx and onnxruntime (the `onnx` extra, in `test`).
"""
import os

import numpy as np
import pytest

import fastconv
from fastconv import layers, models
from fastconv.models import zoo

from seeds import seed_of

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL = 1e-4


def randomize(model, seed):
    """Random biases and BatchNormalization statistics (the initializers leave them 0 and 1)."""
    rng = np.random.default_rng(seed)
    for layer in model._walk():
        for v in layer._own_weights:
            name = v.name.split("/")[-1] if v.name else ""
            if name in ("bias", "beta", "moving_mean"):
                v.assign(rng.normal(0.0, 0.1, v.shape).astype(np.float32))
            elif name in ("gamma", "moving_variance"):
                v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
    return model


def run_onnx(path, *inputs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(session.get_inputs(), inputs)}
    return session.run(None, feeds)


def assert_close(got, want, rtol=RTOL):
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(1.0, float(np.nanmax(np.abs(want))) if np.isfinite(want).any() else 1.0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


def round_trip(model, x, tmp_path, seed=0, **kwargs):
    """Export, check with onnx.checker, run in onnxruntime, compare with predict; the file."""
    randomize(model, seed)
    path = tmp_path / f"{model.name}.onnx"
    fastconv.onnx.export(model, path, **kwargs)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)  # with strict shape inference
    want = model.predict(x, verbose=0)
    (got,) = run_onnx(path, x)
    assert_close(got, want)
    return path


def images(shape, seed, batch=2):
    return np.random.default_rng(seed).standard_normal((batch,) + tuple(shape)).astype(np.float32)


# -- the zoo ---------------------------------------------------------------------------------
slow = pytest.mark.slow
ZOO = [
    ("lenet5", lambda: zoo.lenet5(), (28, 28, 1)),
    ("lenet5_modern", lambda: zoo.lenet5(variant="modern", classifier_activation=None), (28, 28, 1)),
    ("nin", lambda: zoo.nin((67, 67, 3), classes=10), (67, 67, 3)),
    ("googlenet", lambda: zoo.googlenet((32, 32, 3), classes=10), (32, 32, 3)),
    ("resnet18_cifar", lambda: zoo.resnet18((32, 32, 3), classes=10, stem="cifar"), (32, 32, 3)),
    ("resnet20", lambda: zoo.resnet20(), (32, 32, 3)),
    ("resnet50", lambda: zoo.resnet50((32, 32, 3), classes=10), (32, 32, 3)),
    ("densenet121", lambda: zoo.densenet121((32, 32, 3), classes=10), (32, 32, 3)),
    ("small_densenet", lambda: zoo.small_densenet((28, 28, 1), blocks=(2, 2)), (28, 28, 1)),
    ("mobilenet", lambda: zoo.mobilenet((32, 32, 3), classes=10, alpha=0.25), (32, 32, 3)),
    ("resnet20_notop", lambda: zoo.resnet20(include_top=False, pooling="max"), (32, 32, 3)),
    ("densenet121_spatial", lambda: zoo.densenet121((32, 32, 3), include_top=False), (32, 32, 3)),
    pytest.param("vgg11", lambda: zoo.vgg11((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
    pytest.param("alexnet", lambda: zoo.alexnet((67, 67, 3), classes=10), (67, 67, 3), marks=slow),
    pytest.param("vgg13", lambda: zoo.vgg13((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
    pytest.param("vgg16", lambda: zoo.vgg16((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
    pytest.param("vgg19", lambda: zoo.vgg19((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
    pytest.param("resnet18", lambda: zoo.resnet18((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
    pytest.param("resnet34", lambda: zoo.resnet34((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
    pytest.param("resnet101", lambda: zoo.resnet101((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
    pytest.param("resnet152", lambda: zoo.resnet152((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
    pytest.param("resnet32", lambda: zoo.resnet32(), (32, 32, 3), marks=slow),
    pytest.param("resnet56", lambda: zoo.resnet56(), (32, 32, 3), marks=slow),
    pytest.param("densenet169", lambda: zoo.densenet169((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
    pytest.param("densenet201", lambda: zoo.densenet201((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
    pytest.param("mobilenet_1.0", lambda: zoo.mobilenet((32, 32, 3), classes=10), (32, 32, 3), marks=slow),
]


# Zoo constructors added later without a case above still round-trip (slow run), on a guess
# of their arguments; a constructor that does not take them is reported, not skipped.
_COVERED = {p.values[0] if hasattr(p, "values") else p[0] for p in ZOO}
ZOO += [pytest.param(n, lambda n=n: getattr(zoo, n)(input_shape=(96, 96, 3), classes=10), (96, 96, 3), marks=slow)
        for n in zoo.__all__ if n[0].islower() and not any(c == n or c.startswith(n + "_") for c in _COVERED)]


@pytest.mark.parametrize("name, make, shape", ZOO)
def test_zoo_round_trip(name, make, shape, tmp_path):
    round_trip(make(), images(shape, seed_of(name)), tmp_path, seed=seed_of(name, "w"))


# -- Keras applications (when fastconv.applications provides them) ----------------------------
APPLICATIONS = ["VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2",
                "ResNet152V2", "DenseNet121", "DenseNet169", "DenseNet201", "MobileNet", "MobileNetV2",
                "InceptionV3", "Xception", "EfficientNetB0"]


@slow
@pytest.mark.parametrize("name", APPLICATIONS)
def test_applications_round_trip(name, tmp_path):
    constructor = getattr(fastconv.applications, name, None) if hasattr(fastconv, "applications") else None
    if constructor is None:
        pytest.skip(f"fastconv.applications.{name} is not provided yet")
    model = constructor(weights=None, input_shape=(96, 96, 3), classes=10)
    round_trip(model, images((96, 96, 3), seed_of(name)), tmp_path, seed=seed_of(name, "w"))


# -- layers one by one ------------------------------------------------------------------------
def one_layer(layer, shape):
    inputs = layers.Input(shape)
    return models.Model(inputs, layer(inputs))


LAYER_CASES = [
    # (id, layer factory, input shape without batch)
    ("conv_odd_same_stride2", lambda: layers.Conv2D(5, 3, strides=2, padding="same"), (9, 7, 3)),
    ("conv_even_kernel_same", lambda: layers.Conv2D(4, 4, padding="same", activation="relu"), (7, 8, 2)),
    ("conv_even_kernel_same_stride3", lambda: layers.Conv2D(4, (2, 4), strides=3, padding="same"), (10, 11, 2)),
    ("conv_stride_gt_kernel", lambda: layers.Conv2D(3, 2, strides=3, activation="tanh"), (11, 10, 2)),
    ("conv_dilation_same", lambda: layers.Conv2D(4, 3, dilation_rate=2, padding="same"), (9, 10, 3)),
    ("conv_dilation_valid", lambda: layers.Conv2D(4, 3, dilation_rate=(2, 3), activation="gelu"), (11, 12, 2)),
    ("conv_groups", lambda: layers.Conv2D(6, 3, groups=3, padding="same", activation="swish"), (7, 7, 6)),
    ("conv_no_bias_1x1", lambda: layers.Conv2D(5, 1, use_bias=False, activation="sigmoid"), (5, 6, 3)),
    ("depthwise_multiplier", lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                                            activation="relu6"), (7, 9, 3)),
    ("depthwise_stride2_valid", lambda: layers.DepthwiseConv2D(3, strides=2), (9, 8, 4)),
    ("separable", lambda: layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, activation="elu"),
     (8, 7, 3)),
    ("separable_dilated", lambda: layers.SeparableConv2D(4, 3, dilation_rate=2), (9, 9, 2)),
    ("transpose_same_s2", lambda: layers.Conv2DTranspose(4, 3, strides=2, padding="same"), (5, 6, 3)),
    ("transpose_valid_k_lt_s", lambda: layers.Conv2DTranspose(3, 2, strides=3), (4, 5, 2)),
    ("transpose_even_same", lambda: layers.Conv2DTranspose(3, 4, strides=2, padding="same",
                                                           activation="leaky_relu"), (5, 4, 2)),
    ("transpose_output_padding", lambda: layers.Conv2DTranspose(3, 3, strides=2, output_padding=1), (4, 4, 2)),
    ("transpose_dilated", lambda: layers.Conv2DTranspose(2, 3, dilation_rate=2, padding="same"), (5, 5, 2)),
    ("dense_2d", lambda: layers.Dense(7, activation="softmax"), (11,)),
    ("dense_on_images", lambda: layers.Dense(4, activation="selu"), (3, 5, 6)),
    ("batch_norm_images", lambda: layers.BatchNormalization(epsilon=1e-2), (5, 4, 3)),
    ("batch_norm_vectors", lambda: layers.BatchNormalization(), (6,)),
    ("batch_norm_axis1", lambda: layers.BatchNormalization(axis=1), (3, 4, 5)),
    ("batch_norm_no_center_scale", lambda: layers.BatchNormalization(center=False, scale=False), (3, 4, 5)),
    ("max_pool_same", lambda: layers.MaxPooling2D(3, 2, padding="same"), (7, 8, 3)),
    ("max_pool_stride_gt_pool", lambda: layers.MaxPooling2D(2, 3), (10, 11, 2)),
    ("avg_pool_same", lambda: layers.AveragePooling2D(3, 2, padding="same"), (7, 6, 3)),
    ("avg_pool_even_same", lambda: layers.AveragePooling2D(2, 1, padding="same"), (5, 5, 2)),
    ("global_avg_keepdims", lambda: layers.GlobalAveragePooling2D(keepdims=True), (5, 3, 4)),
    ("global_max", lambda: layers.GlobalMaxPooling2D(), (5, 3, 4)),
    ("zero_padding", lambda: layers.ZeroPadding2D(((1, 2), (0, 3))), (4, 5, 2)),
    ("cropping", lambda: layers.Cropping2D(((1, 0), (2, 1))), (6, 7, 2)),
    ("upsampling_nearest", lambda: layers.UpSampling2D((2, 3)), (3, 4, 2)),
    ("upsampling_bilinear", lambda: layers.UpSampling2D(2, interpolation="bilinear"), (3, 5, 2)),
    ("flatten", lambda: layers.Flatten(), (3, 4, 5)),
    ("reshape", lambda: layers.Reshape((-1, 6)), (3, 4, 2)),
    ("reshape_to_image", lambda: layers.Reshape((2, 3, 4)), (24,)),
    ("dropout", lambda: layers.Dropout(0.5), (4, 4, 2)),
    ("identity", lambda: layers.Identity(), (4, 4, 2)),
    ("permute", lambda: layers.Permute((3, 1, 2)), (4, 5, 2)),
    ("permute_vectors", lambda: layers.Permute((2, 1)), (3, 5)),
    ("repeat_vector", lambda: layers.RepeatVector(3), (5,)),
    ("relu6", lambda: layers.ReLU(6.0), (4, 4, 3)),
    ("relu_general", lambda: layers.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5), (4, 4, 3)),
    ("leaky_relu", lambda: layers.LeakyReLU(0.15), (4, 4, 3)),
    ("elu", lambda: layers.ELU(0.7), (4, 4, 3)),
    ("prelu_shared", lambda: layers.PReLU(alpha_initializer="glorot_uniform", shared_axes=[1, 2]), (4, 4, 3)),
    ("softmax_axis1", lambda: layers.Softmax(axis=1), (4, 5, 3)),
    ("rescaling", lambda: layers.Rescaling(1 / 255.0, offset=-0.5), (4, 4, 3)),
    ("rescaling_per_channel", lambda: layers.Rescaling([1.0, 2.0, 0.5]), (4, 4, 3)),
    ("layer_norm", lambda: layers.LayerNormalization(), (4, 5, 3)),
    ("layer_norm_hw_axes", lambda: layers.LayerNormalization(axis=(1, 2), epsilon=1e-2), (4, 5, 3)),
    ("layer_norm_vectors", lambda: layers.LayerNormalization(axis=-1), (7,)),
    ("center_crop", lambda: layers.CenterCrop(3, 4), (6, 7, 2)),
    ("center_crop_smaller_resizes", lambda: layers.CenterCrop(8, 5), (6, 7, 2)),
    ("random_crop_at_inference", lambda: layers.RandomCrop(3, 3), (6, 5, 2)),
    ("resizing_bilinear_down", lambda: layers.Resizing(4, 3), (7, 9, 2)),
    ("resizing_bilinear_up", lambda: layers.Resizing(9, 11), (4, 5, 2)),
    ("resizing_nearest", lambda: layers.Resizing(5, 7, interpolation="nearest"), (7, 4, 2)),
    ("resizing_nearest_ties", lambda: layers.Resizing(3, 12, interpolation="nearest"), (6, 4, 2)),
    ("resizing_aspect_crop", lambda: layers.Resizing(4, 4, crop_to_aspect_ratio=True), (6, 9, 2)),
    ("resizing_aspect_pad", lambda: layers.Resizing(4, 4, pad_to_aspect_ratio=True, fill_value=0.25), (6, 9, 2)),
    ("resizing_aspect_pad_rows", lambda: layers.Resizing(6, 3, pad_to_aspect_ratio=True), (5, 4, 2)),
    ("random_contrast_at_inference", lambda: layers.RandomContrast(0.5), (4, 4, 3)),
    ("conv_softmax_channels", lambda: layers.Conv2D(4, 3, activation="softmax"), (5, 5, 2)),
    ("conv_log_softmax_channels", lambda: layers.Conv2D(4, 1, activation="log_softmax"), (5, 5, 2)),
    ("normalization", lambda: layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 4.0, 0.25]), (4, 4, 3)),
]
ACTIVATIONS = ["relu", "sigmoid", "tanh", "softmax", "log_softmax", "relu6", "elu", "selu", "leaky_relu",
               "gelu", "silu", "swish", "hard_sigmoid", "hard_silu", "softplus", "softsign", "mish", "exponential",
               "linear"]


@pytest.mark.parametrize("name, make, shape", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
@pytest.mark.parametrize("batch", [1, 3])
def test_layer_round_trip(name, make, shape, batch, tmp_path):
    round_trip(one_layer(make(), shape), images(shape, seed_of(name), batch), tmp_path, seed=seed_of(name))


IMAGE_CASES = [c for c in LAYER_CASES if len(c[2]) == 3]


@pytest.mark.parametrize("name, make, shape", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_layer_after_conv_round_trip(name, make, shape, tmp_path):
    """The same layers fed by a convolution, so their input is held in NCHW inside the graph
    (axes, per-channel constants and crops must be mapped), not the graph's NHWC input."""
    inputs = layers.Input(shape)
    model = models.Model(inputs, make()(layers.Conv2D(shape[-1], 1)(inputs)))
    round_trip(model, images(shape, seed_of(name, "conv")), tmp_path, seed=seed_of(name))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_round_trip(activation, tmp_path):
    x = images((5, 4, 3), seed_of(activation)) * 3.0
    round_trip(one_layer(layers.Activation(activation), (5, 4, 3)), x, tmp_path)


def test_adapted_normalization(tmp_path):
    norm = layers.Normalization()
    norm.adapt(images((4, 4, 3), 1, batch=8) * 2.0 + 1.0)
    round_trip(one_layer(norm, (4, 4, 3)), images((4, 4, 3), 2), tmp_path)


@pytest.mark.parametrize("merge", ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"])
def test_merges_mixing_layouts(merge, tmp_path):
    """One branch stays NCHW inside the graph (a conv), the other is Keras's layout (a reshape):
    the merge must line them up."""
    inputs = layers.Input((6, 5, 3))
    conv = layers.Conv2D(4, 3, padding="same")(inputs)
    dense = layers.Reshape((6, 5, 4))(layers.Dense(120)(layers.Flatten()(inputs)))
    out = getattr(layers, merge)()([conv, dense])
    round_trip(models.Model(inputs, out), images((6, 5, 3), 3), tmp_path)


def test_concatenate_other_axis_and_three_inputs(tmp_path):
    inputs = layers.Input((4, 5, 3))
    a = layers.Conv2D(3, 1)(inputs)
    out = layers.Concatenate(axis=1)([a, inputs, layers.Conv2D(3, 3, padding="same")(inputs)])
    round_trip(models.Model(inputs, out), images((4, 5, 3), 4), tmp_path)


# -- graph properties -------------------------------------------------------------------------
def test_dynamic_batch_and_nhwc_spatial_output(tmp_path):
    model = models.Sequential([layers.Input((9, 9, 2)), layers.Conv2D(3, 3, strides=2, padding="same"),
                               layers.BatchNormalization(), layers.ReLU()])
    path = round_trip(model, images((9, 9, 2), 5), tmp_path)
    proto = onnx.load(str(path))
    assert [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["batch", 9, 9, 2]
    for batch in (1, 7):
        x = images((9, 9, 2), batch, batch)
        (got,) = run_onnx(path, x)
        assert got.shape == (batch, 5, 5, 3)
        assert_close(got, model.predict(x, verbose=0))
    # one transpose in (NHWC -> NCHW), one out
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 2


def test_fixed_batch_size(tmp_path):
    model = zoo.lenet5()
    proto = fastconv.onnx.export(model, tmp_path / "m.onnx", batch_size=4)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    x = images((28, 28, 1), 6, 4)
    assert_close(run_onnx(tmp_path / "m.onnx", x)[0], model.predict(x, verbose=0))


@pytest.mark.parametrize("opset", [14, 15, 16, 17])
def test_opsets(opset, tmp_path):
    inputs = layers.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="hard_silu")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.UpSampling2D(2)(x)
    x = layers.Reshape((8, 8, 4))(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = models.Model(inputs, layers.Dense(3, activation="gelu")(x))
    path = round_trip(model, images((8, 8, 3), 7), tmp_path, opset=opset)
    assert onnx.load(str(path)).opset_import[0].version == opset


def test_model_export_method_and_nested_frozen_base(tmp_path, capsys):
    """The fine-tuning shape: a frozen base model called inside a new model, exported with
    model.export(path, format="onnx")."""
    base = zoo.resnet20(include_top=False)
    base.trainable = False
    inputs = layers.Input((32, 32, 3))
    x = base(inputs, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    model = models.Model(inputs, layers.Dense(5, activation="softmax")(layers.Dropout(0.3)(x)))
    randomize(model, 8)
    model.export(tmp_path / "fine.onnx", format="onnx", verbose=True)
    assert "Saved ONNX model (opset 17)" in capsys.readouterr().out
    x = images((32, 32, 3), 8)
    assert_close(run_onnx(tmp_path / "fine.onnx", x)[0], model.predict(x, verbose=0))


def test_two_inputs_two_outputs(tmp_path):
    a, b = layers.Input((4, 4, 2), name="left"), layers.Input((4, 4, 2), name="right")
    s = layers.Add()([layers.Conv2D(3, 1)(a), layers.Conv2D(3, 1)(b)])
    model = models.Model([a, b], [layers.Flatten(name="flat")(s), layers.ReLU(name="image")(s)])
    randomize(model, 9)
    proto = fastconv.onnx.export(model, tmp_path / "two.onnx")
    assert [i.name for i in proto.graph.input] == ["left", "right"]
    assert [o.name for o in proto.graph.output] == ["flat", "image"]
    xa, xb = images((4, 4, 2), 10), images((4, 4, 2), 11)
    got, want = run_onnx(tmp_path / "two.onnx", xa, xb), model.predict([xa, xb], verbose=0)
    for g, w in zip(got, want):
        assert_close(g, w)


def test_nan_propagates_through_max_pooling(tmp_path):
    inputs = layers.Input((6, 6, 2))
    pooled = layers.MaxPooling2D(2)(inputs)
    model = models.Model(inputs, layers.Concatenate()([layers.Flatten()(pooled),
                                                       layers.GlobalMaxPooling2D()(layers.ReLU()(inputs))]))
    fastconv.onnx.export(model, tmp_path / "nan.onnx")
    x = images((6, 6, 2), 12)
    x[0, 1, 1, 0] = np.nan  # one pooling window and one channel's global max
    x[1, 5, 4, 1] = np.nan
    got, want = run_onnx(tmp_path / "nan.onnx", x)[0], model.predict(x, verbose=0)
    assert np.isnan(want).sum() == 4
    assert_close(got, want)


# -- bad input --------------------------------------------------------------------------------
def test_unsupported_layer_names_layer_and_type(tmp_path):
    inputs = layers.Input((4,))
    model = models.Model(inputs, layers.Lambda(lambda t: t * 2.0, name="doubler")(inputs))
    with pytest.raises(fastconv.onnx.UnsupportedLayerError, match=r"'doubler' of type Lambda"):
        fastconv.onnx.export(model, tmp_path / "x.onnx")
    assert not os.listdir(tmp_path)  # nothing written, no temporary file left


def test_custom_activation_and_subclassed_model_refused(tmp_path):
    model = one_layer(layers.Dense(3, activation=lambda t: t * 2.0, name="custom_act"), (4,))
    with pytest.raises(ValueError, match=r"'custom_act' of type Dense.*activation"):
        fastconv.onnx.export(model, tmp_path / "x.onnx")

    class Net(models.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, x, training=None):
            return self.dense(x)
    net = Net()
    net.build((None, 3))
    with pytest.raises(TypeError, match="subclassed Net"):
        fastconv.onnx.export(net, tmp_path / "x.onnx")


def test_subclass_with_its_own_call_is_not_exported_as_its_parent(tmp_path):
    class DoubledConv(layers.Conv2D):
        def call(self, inputs):
            return super().call(inputs) * 2.0
    with pytest.raises(fastconv.onnx.UnsupportedLayerError, match="type DoubledConv"):
        fastconv.onnx.export(one_layer(DoubledConv(2, 1), (3, 3, 1)), tmp_path / "x.onnx")


@pytest.mark.parametrize("kwargs, match", [
    ({"opset": 13}, "opset must be an int from 14 to 17"),
    ({"opset": 18}, "opset must be an int from 14 to 17"),
    ({"opset": "17"}, "opset"),
    ({"batch_size": 0}, "batch_size must be None"),
    ({"batch_size": 2.0}, "batch_size must be None"),
])
def test_bad_arguments(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        fastconv.onnx.export(zoo.lenet5(), tmp_path / "x.onnx", **kwargs)


def test_bad_model_path_and_format(tmp_path):
    with pytest.raises(TypeError, match="model must be a fastconv Model"):
        fastconv.onnx.export(layers.Dense(3), tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="path must be a str"):
        fastconv.onnx.export(zoo.lenet5(), 42)
    with pytest.raises(ValueError, match="format must be 'onnx'"):
        zoo.lenet5().export(tmp_path / "x", format="tf_saved_model")
    with pytest.raises(ValueError, match="has no input shape"):
        fastconv.onnx.export(models.Sequential([layers.Dense(2)]), tmp_path / "x.onnx")


def test_weights_too_large_for_one_file(tmp_path, monkeypatch):
    import importlib
    export_module = importlib.import_module("fastconv.onnx.export")  # the module, not the function
    monkeypatch.setattr(export_module, "MAX_WEIGHT_BYTES", 1000)
    with pytest.raises(ValueError, match=r"model 'lenet5' has 0.00 GiB of weights; an ONNX file holds at most"):
        fastconv.onnx.export(zoo.lenet5(), tmp_path / "x.onnx")
    assert not os.listdir(tmp_path)


def test_failed_export_keeps_previous_file(tmp_path):
    path = tmp_path / "m.onnx"
    fastconv.onnx.export(zoo.lenet5(), path)
    before = path.read_bytes()
    inputs = layers.Input((4,))
    with pytest.raises(ValueError):
        fastconv.onnx.export(models.Model(inputs, layers.Lambda(lambda t: t)(inputs)), path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.onnx"]


def test_import_fastconv_does_not_import_onnx():
    from fastconv_subprocess import run_python
    # fastconv.onnx itself loads on first use, and imports onnx only when it exports.
    code = ("import sys, fastconv; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('onnx', 'onnxruntime') or m == 'fastconv.onnx')); fastconv.onnx.supported_layers(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))")
    result = run_python(["-c", code], capture_output=True, text=True)
    assert result.stdout.split("\n")[:2] == ["[]", "[]"], result.stdout + result.stderr


def test_unknown_height_and_width(tmp_path):
    """A fully convolutional model on Input((None, None, C)): 'same' becomes auto_pad
    SAME_UPPER (TensorFlow's rule at run time); one file serves several image sizes."""
    inputs = layers.Input((None, None, 3))
    x = layers.Conv2D(4, 4, strides=2, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(3, 2, padding="same")(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    model = models.Model(inputs, layers.GlobalAveragePooling2D()(layers.ZeroPadding2D(1)(x)))
    randomize(model, 13)
    fastconv.onnx.export(model, tmp_path / "any.onnx")
    for size in ((9, 9), (12, 7)):
        x = images(size + (3,), sum(size))
        assert_close(run_onnx(tmp_path / "any.onnx", x)[0], model.predict(x, verbose=0))


def test_bench_onnx_runs(capsys):
    import sys
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after site-packages
    from benchmarks import bench_onnx
    rows = bench_onnx.main(["--quick", "--threads", "1", "--repeats", "1", "--batches", "2"])
    assert [r["case"] for r in rows] == ["LeNet-5 b2"] and rows[0]["max_abs_diff"] < 1e-4
    assert "| LeNet-5 b2 |" in capsys.readouterr().out


def test_shared_layer_weights_stored_once(tmp_path):
    a, b = layers.Input((6, 6, 2)), layers.Input((6, 6, 2))
    conv, dense = layers.Conv2D(3, 3, padding="same"), layers.Dense(4)
    outs = [dense(layers.GlobalAveragePooling2D()(conv(t))) for t in (a, b)]
    model = models.Model([a, b], layers.Subtract()(outs))
    randomize(model, 14)
    proto = fastconv.onnx.export(model, tmp_path / "siamese.onnx")
    weights = [i for i in proto.graph.initializer if i.name.endswith(("/kernel", "/bias"))]
    assert len(weights) == 4  # conv and dense kernel and bias, once each
    xa, xb = images((6, 6, 2), 15), images((6, 6, 2), 16)
    assert_close(run_onnx(tmp_path / "siamese.onnx", xa, xb)[0], model.predict([xa, xb], verbose=0))


def test_register_an_exporter_for_a_custom_layer(tmp_path):
    class Scale(layers.Layer):
        def __init__(self, factor, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def compute_output_shape(self, shape):
            return shape

    @fastconv.onnx.register(Scale)
    def _scale(g, layer, x):
        y = g.op("Mul", [x.name, g.const(np.float32(layer.factor), f"{layer.name}/factor")], f"{layer.name}/mul")
        return fastconv.onnx.Value(y, x.layout, x.shape)

    inputs = layers.Input((5, 5, 2))
    model = models.Model(inputs, Scale(3.0)(layers.Conv2D(2, 3)(inputs)))
    round_trip(model, images((5, 5, 2), 17), tmp_path)


def test_missing_onnx_package_says_which_extra():
    from fastconv_subprocess import run_python
    code = ("import sys; sys.modules['onnx'] = None\n"  # what Python does for a package that is absent
            "import fastconv\n"
            "try:\n    fastconv.onnx.export(fastconv.models.lenet5(), 'never.onnx')\n"
            "except ImportError as e:\n    print(e)\n")
    result = run_python(["-c", code], capture_output=True, text=True)
    assert "pip install 'fastconv[onnx]'" in result.stdout, result.stdout + result.stderr
