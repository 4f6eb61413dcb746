"""get_config / from_config for every public layer, optimizer, schedule, loss, metric,
regularizer, initializer and callback, through JSON (what a model file stores).

For each object: from_config(get_config()) gives the same config (after a JSON round trip,
which turns tuples into lists), and a layer with weights, given the original's weights with
set_weights, computes the same outputs (exactly: same kernels, same inputs)."""
import importlib.util
import inspect
import json

import numpy as np
import pytest

import fastconv as fc
from fastconv import callbacks, initializers, layers, losses, metrics, optimizers, preprocessing, regularizers
from fastconv.optimizers import schedules
from fastconv.saving import custom_object_scope, deserialize, register_keras_serializable, serialize


def as_json(data):
    return json.loads(json.dumps(data))


# (class, constructor kwargs, input shape or list of shapes)
IMG = (None, 8, 8, 3)
LAYERS = [
    (layers.Activation, dict(activation="tanh"), IMG),
    (layers.Add, {}, [IMG, IMG]),
    (layers.Average, {}, [IMG, IMG]),
    (layers.AveragePooling2D, dict(pool_size=3, strides=2, padding="same"), IMG),
    (layers.BatchNormalization, dict(momentum=0.9, epsilon=1e-4, gamma_regularizer=regularizers.L2(0.01)), IMG),
    (layers.CenterCrop, dict(height=4, width=6), IMG),
    (layers.Concatenate, dict(axis=-1), [IMG, IMG]),
    (layers.Conv2D, dict(filters=4, kernel_size=3, strides=2, padding="same", activation="relu",
                         kernel_initializer=initializers.HeNormal(seed=1),
                         kernel_regularizer=regularizers.L1L2(0.01, 0.02)), IMG),
    (layers.Conv2DTranspose, dict(filters=2, kernel_size=3, strides=2, padding="same"), IMG),
    (layers.Cropping2D, dict(cropping=((1, 2), (0, 1))), IMG),
    (layers.Dense, dict(units=5, activation="softmax", use_bias=False,
                        kernel_initializer=initializers.RandomNormal(0.0, 0.5, seed=3)), (None, 7)),
    (layers.DepthwiseConv2D, dict(kernel_size=3, depth_multiplier=2, padding="same"), IMG),
    (layers.Dropout, dict(rate=0.3, seed=4), IMG),
    (layers.ELU, dict(alpha=0.5), IMG),
    (layers.Flatten, {}, IMG),
    (layers.GaussianNoise, dict(stddev=0.1, seed=2), IMG),
    (layers.GlobalAveragePooling2D, dict(keepdims=True), IMG),
    (layers.GlobalMaxPooling2D, {}, IMG),
    (layers.Identity, {}, IMG),
    (layers.LayerNormalization, dict(epsilon=1e-5), IMG),
    (layers.LeakyReLU, dict(negative_slope=0.2), IMG),
    (layers.MaxPooling2D, dict(pool_size=2), IMG),
    (layers.Maximum, {}, [IMG, IMG]),
    (layers.Minimum, {}, [IMG, IMG]),
    (layers.Multiply, {}, [IMG, IMG]),
    (layers.Normalization, dict(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 4.0]), IMG),
    (layers.Permute, dict(dims=(3, 1, 2)), IMG),
    (layers.PReLU, dict(alpha_initializer=initializers.Constant(0.25), shared_axes=[1, 2]), IMG),
    (layers.RandomBrightness, dict(factor=0.2, value_range=(0, 1), seed=1), IMG),
    (layers.RandomContrast, dict(factor=0.3, seed=1), IMG),
    (layers.RandomCrop, dict(height=6, width=5, seed=1), IMG),
    (layers.ReLU, dict(max_value=6.0), IMG),
    (layers.RepeatVector, dict(n=3), (None, 7)),
    (layers.Rescaling, dict(scale=1 / 255.0, offset=-0.5), IMG),
    (layers.Reshape, dict(target_shape=(64, 3)), IMG),
    (layers.Resizing, dict(height=4, width=4), IMG),
    (layers.SeparableConv2D, dict(filters=4, kernel_size=3, padding="same"), IMG),
    (layers.Softmax, dict(axis=-1), IMG),
    (layers.SpatialDropout2D, dict(rate=0.2, seed=3), IMG),
    (layers.Subtract, {}, [IMG, IMG]),
    (layers.UpSampling2D, dict(size=2), IMG),
    (layers.ZeroPadding2D, dict(padding=2), IMG),
    (layers.InputLayer, dict(shape=(8, 8, 3)), None),
    (preprocessing.RandomFlip, dict(mode="horizontal", seed=1), IMG),
    (preprocessing.RandomRotation, dict(factor=0.1, seed=1), IMG),
    (preprocessing.RandomTranslation, dict(height_factor=0.1, width_factor=0.2, seed=1), IMG),
    (preprocessing.RandomZoom, dict(height_factor=0.1, seed=1), IMG),
]
if hasattr(layers, "SyncBatchNormalization"):  # comes with fastconv.distribute
    LAYERS.append((layers.SyncBatchNormalization, dict(momentum=0.9, epsilon=1e-4), IMG))


def test_every_public_layer_is_covered():
    covered = {cls for cls, _, _ in LAYERS} | {layers.Lambda, layers.Layer}  # Lambda: its own test
    public = {v for k, v in vars(layers).items() if inspect.isclass(v) and issubclass(v, layers.Layer)}
    assert public - covered == set()


def _inputs(shape, rng):
    if isinstance(shape, list):
        return [_inputs(s, rng) for s in shape]
    return rng.standard_normal((2,) + tuple(shape[1:])).astype(np.float32)


@pytest.mark.parametrize("cls,kwargs,shape", LAYERS, ids=[c.__name__ for c, _, _ in LAYERS])
def test_layer_config_roundtrip(cls, kwargs, shape):
    fc.set_seed(0)
    layer = cls(**kwargs)
    config = as_json(layer.get_config())
    again = cls.from_config(config)
    assert as_json(again.get_config()) == config
    # Through the generic path too, as a model file does it.
    again = deserialize(as_json(serialize(layer)))
    assert type(again) is cls and as_json(again.get_config()) == config
    if shape is None:
        return
    rng = np.random.default_rng(0)
    x = _inputs(shape, rng)
    want = layer(x, training=False).numpy()
    again(x, training=False)  # builds
    weights = layer.get_weights()
    if weights:  # fresh weights differ: prove set_weights is what makes the outputs equal
        # Positive values: BatchNormalization's moving variance must stay >= 0.
        rng_weights = [rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in weights]
        layer.set_weights(rng_weights)
        want = layer(x, training=False).numpy()
        again.set_weights(rng_weights)
    np.testing.assert_array_equal(again(x, training=False).numpy(), want)


def test_lambda_layer_config_needs_a_name_to_find_the_function():
    lam = layers.Lambda(lambda t: t * 2)
    with pytest.raises(ValueError, match="no name to save it by.*register_keras_serializable"):
        lam.get_config()

    @register_keras_serializable(package="test_config")
    def triple(t):
        return t * 3
    lam = layers.Lambda(triple, name="triple_it")
    config = as_json(serialize(lam))
    assert config["config"]["function"] == "test_config>triple"
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    np.testing.assert_array_equal(deserialize(config)(x).numpy(), 3 * x)


OPTIMIZERS = [
    optimizers.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=1.0),
    optimizers.Adam(schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.5, staircase=True),
                    beta_1=0.8, amsgrad=True),
    optimizers.AdamW(0.002, weight_decay=0.01),
    optimizers.RMSprop(0.003, rho=0.8, momentum=0.1, centered=True),
    optimizers.Adagrad(0.1, initial_accumulator_value=0.2),
]
SCHEDULES = [
    schedules.ExponentialDecay(0.1, 100, 0.9),
    schedules.InverseTimeDecay(0.1, 10, 0.5, staircase=True),
    schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]),
    schedules.CosineDecay(0.1, 1000, alpha=0.1),
    schedules.PolynomialDecay(0.1, 100, end_learning_rate=0.01, power=2.0),
]
LOSSES = [losses.SparseCategoricalCrossentropy(from_logits=True), losses.CategoricalCrossentropy(label_smoothing=0.1),
          losses.BinaryCrossentropy(from_logits=True), losses.MeanSquaredError(name="mse_loss"),
          losses.Huber(delta=0.5)]
METRICS = [metrics.Mean(name="m"), metrics.Accuracy(), metrics.SparseCategoricalAccuracy(),
           metrics.CategoricalAccuracy(), metrics.BinaryAccuracy(threshold=0.3), metrics.TopKCategoricalAccuracy(k=3),
           metrics.SparseTopKCategoricalAccuracy(k=2), metrics.MeanSquaredError(), metrics.MeanAbsoluteError(),
           metrics.Precision(thresholds=[0.3, 0.6]), metrics.Recall(top_k=2, class_id=1),
           metrics.AUC(num_thresholds=50, curve="PR", from_logits=True)]
REGULARIZERS = [regularizers.L1(0.1), regularizers.L2(0.2), regularizers.L1L2(0.3, 0.4)]
INITIALIZERS = [initializers.Zeros(), initializers.Ones(), initializers.Constant(0.5),
                initializers.RandomNormal(0.1, 0.2, seed=1), initializers.RandomUniform(-0.1, 0.3, seed=2),
                initializers.TruncatedNormal(0.0, 0.5, seed=3),
                initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal", seed=4),
                initializers.GlorotUniform(seed=5), initializers.GlorotNormal(seed=6), initializers.HeUniform(seed=7),
                initializers.HeNormal(seed=8), initializers.LecunUniform(seed=9), initializers.LecunNormal(seed=10)]
CALLBACKS = [callbacks.EarlyStopping(monitor="loss", patience=3, min_delta=0.01, restore_best_weights=True),
             callbacks.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=1e-4),
             callbacks.ModelCheckpoint("ck-{epoch}.keras", save_best_only=True),
             callbacks.CSVLogger("log.csv", append=True), callbacks.TerminateOnNaN(), callbacks.History(),
             callbacks.ProgbarLogger(), callbacks.BackupAndRestore("backup", delete_checkpoint=False)]
if importlib.util.find_spec("tensorboardX"):  # the optional extra it needs
    CALLBACKS.append(callbacks.TensorBoard("logs", update_freq="batch"))
OBJECTS = OPTIMIZERS + SCHEDULES + LOSSES + METRICS + REGULARIZERS + INITIALIZERS + CALLBACKS


@pytest.mark.parametrize("obj", OBJECTS, ids=[type(o).__name__ for o in OBJECTS])
def test_object_config_roundtrip(obj):
    config = as_json(obj.get_config())
    assert as_json(type(obj).from_config(config).get_config()) == config
    again = deserialize(as_json(serialize(obj)))
    assert type(again) is type(obj) and as_json(again.get_config()) == config


def test_configs_keep_what_changes_behaviour():
    # Values checked by behaviour, not only by config equality: the rebuilt objects compute the same.
    sgd = deserialize(as_json(serialize(OPTIMIZERS[0])))
    assert (sgd.momentum, sgd.nesterov, sgd.clipnorm) == (0.9, True, 1.0)
    adam = deserialize(as_json(serialize(OPTIMIZERS[1])))
    assert adam.learning_rate == pytest.approx(0.01) and adam._learning_rate(25) == pytest.approx(0.0025)
    for sched in SCHEDULES:
        again = deserialize(as_json(serialize(sched)))
        assert [again(s) for s in (0, 7, 50, 2000)] == pytest.approx([sched(s) for s in (0, 7, 50, 2000)])
    for init in INITIALIZERS:
        again = deserialize(as_json(serialize(init)))
        np.testing.assert_array_equal(again((3, 4)), init((3, 4)))  # seeded: same draws
    y, p = np.array([[0.0, 1.0]], np.float32), np.array([[0.2, 0.8]], np.float32)
    for loss in LOSSES[1:3]:
        again = deserialize(as_json(serialize(loss)))
        assert float(again(y, p).numpy()) == pytest.approx(float(loss(y, p).numpy()), abs=1e-7)
    w = fc.Variable(np.array([1.0, -2.0], np.float32))
    for reg in REGULARIZERS:
        assert float(deserialize(as_json(serialize(reg)))(w).numpy()) == pytest.approx(float(reg(w).numpy()))


def test_changed_learning_rate_is_what_the_config_keeps():
    opt = optimizers.SGD(0.1, lr=None)
    opt.learning_rate = 0.025  # as ReduceLROnPlateau does
    assert opt.get_config()["learning_rate"] == 0.025


def test_functions_are_refused_unless_registered():
    def my_schedule(epoch, lr):
        return lr * 0.5
    with pytest.raises(ValueError, match="cannot save the Python function 'my_schedule'.*register_keras_serializable"):
        serialize(callbacks.LearningRateScheduler(my_schedule))
    register_keras_serializable(package="test_config")(my_schedule)
    again = deserialize(as_json(serialize(callbacks.LearningRateScheduler(my_schedule))))
    assert again.schedule is my_schedule


def test_unknown_class_names_say_how_to_register():
    bad = {"module": "os", "class_name": "system", "config": {"command": "echo hi"}, "registered_name": None}
    with pytest.raises(ValueError, match=r"unknown class 'system'.*register_keras_serializable.*custom_objects"):
        deserialize(bad)


def test_custom_objects_and_scope_find_user_classes():
    class Scaled(layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor
    config = as_json(serialize(Scaled(3.0, name="s")))
    assert config["config"]["factor"] == 3.0
    with pytest.raises(ValueError, match="unknown class 'Scaled'"):
        deserialize(config)
    assert deserialize(config, custom_objects={"Scaled": Scaled}).factor == 3.0
    with custom_object_scope({"Scaled": Scaled}):
        assert deserialize(config).factor == 3.0
    with pytest.raises(ValueError, match="unknown class 'Scaled'"):
        deserialize(config)  # the scope ended


def test_user_get_config_overrides_decide_what_is_kept():
    class WithCallable(layers.Layer):
        def __init__(self, fn, scale=2.0, **kwargs):
            super().__init__(**kwargs)
            self.fn, self.scale = fn, scale

        def get_config(self):  # leaves the function out, as a Keras user would
            return {**super().get_config(), "scale": self.scale}
    config = WithCallable(np.tanh, scale=3.0, name="wc").get_config()
    assert config == {"scale": 3.0, "name": "wc", "trainable": True, "dtype": "float32"}

    class NoOverride(layers.Layer):
        def __init__(self, fn, **kwargs):
            super().__init__(**kwargs)
            self.fn = fn
    with pytest.raises(ValueError, match="NoOverride.fn: cannot save the Python function"):
        NoOverride(lambda t: t).get_config()
    with pytest.raises(ValueError, match="Conv2D.kernel_regularizer: cannot save"):
        layers.Conv2D(2, 3, kernel_regularizer=lambda w: w.sum()).get_config()  # fastconv's own: never dropped


def test_registration_paths_match_keras():
    assert fc.utils.register_keras_serializable is register_keras_serializable
    assert fc.saving.register_keras_serializable is register_keras_serializable
    assert fc.utils.custom_object_scope is fc.saving.custom_object_scope
    assert fc.utils.get_custom_objects() is fc.saving.get_custom_objects()
    with pytest.raises(ValueError, match="get_config"):
        register_keras_serializable()(type("NoConfig", (), {}))
