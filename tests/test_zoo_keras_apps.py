"""InceptionV3, Xception and EfficientNetB0 against Keras 3 applications.

Golden data (tests/golden/keras_apps/, made by make_keras_apps.py with Keras 3.15): every layer
in Keras's order with its class, weight shapes and inputs; the parameter counts; the output
shapes without the top; and Keras's logits (float64) for 2 images under weights fixed by layer
and weight names (seeded_weights.py, rebuilt here without TensorFlow) with BatchNormalization
moving statistics calibrated on other images and perturbed (stored: 0.9 MB for three models).
Tolerance: max |diff| over max |Keras| <= 1e-4 (float32 through ~100 layers; measured 2e-6 to
2e-5, and 7e-5 for InceptionV3 on the cpu backend, whose Winograd 3x3 convolutions round more).

The peer test rebuilds everything in Keras (its own random initialisation, BatchNormalization
statistics calibrated and perturbed) in a subprocess of the peers' Python and copies the weights
over by layer name; it runs where FASTCONV_PEERS_PYTHON names a Python with tensorflow (or this
one has it), and is marked slow (about 70 s):
`FASTCONV_PEERS_PYTHON=... pytest -m slow tests/test_zoo_keras_apps.py`.
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv as fc
from fastconv import layers
from fastconv.models.efficientnet import efficientnet, efficientnet_b0
from fastconv.models.inception_v3 import inception_v3
from fastconv.models.xception import xception

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "keras_apps")
sys.path.insert(0, GOLDEN_DIR)
from seeded_weights import seeded_weight  # noqa: E402

BUILDERS = {"inception_v3": inception_v3, "xception": xception, "efficientnet_b0": efficientnet_b0}
# Keras 3.15's counts at 299x299x3 (224 for EfficientNetB0), 1000 classes, as issue 17 states them.
KERAS_COUNTS = {"inception_v3": 23_851_784, "xception": 22_910_480, "efficientnet_b0": 5_330_571}
RTOL = 1e-4


with open(os.path.join(GOLDEN_DIR, "keras_apps.json")) as f:
    GOLDEN = json.load(f)
with np.load(os.path.join(GOLDEN_DIR, "keras_apps.npz"), allow_pickle=False) as f:
    ARRAYS = {k: f[k] for k in f.files}


def max_rel(actual, expected):
    return float(np.abs(np.asarray(actual) - expected).max() / np.abs(expected).max())


def small(name, **kwargs):
    """The model at Keras's smallest input size for it (the goldens' size)."""
    return BUILDERS[name](input_shape=tuple(GOLDEN["models"][name]["input_shape"]), **kwargs)


def inbound_names(model):
    parents = {}
    for node in model._nodes:
        parents.setdefault(id(node.layer), [p.layer.name for p in node.parents])
    return parents


def set_weights_by_name(model, name, weights_of):
    """model's weights from weights_of(layer_name, keras_weight_names, shapes), Keras's names taken
    from the golden layer list (fastconv's DepthwiseConv2D calls its kernel depthwise_kernel)."""
    keras_names = {l[0]: [w[0] for w in l[2]] for l in GOLDEN["models"][name]["layers"]}
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(weights_of(layer.name, keras_names[layer.name], [w.shape for w in layer.weights]))


def golden_weights(name):
    """weights_of for the goldens: seeded_weights.py's arrays, BatchNormalization's calibrated
    moving statistics from the .npz."""
    def weights_of(layer_name, names, shapes):
        return [ARRAYS.get(f"{name}/stats/{layer_name}/{n}", None) if n.startswith("moving_") else
                seeded_weight(layer_name, n, s) for n, s in zip(names, shapes)]
    return weights_of


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_parameter_count_at_the_default_size_is_keras(name):
    assert GOLDEN["models"][name]["count_params_default"] == KERAS_COUNTS[name]
    model = BUILDERS[name]()
    assert model.count_params() == KERAS_COUNTS[name]
    assert model.input_shape == (None,) + tuple(GOLDEN["models"][name]["default_input_shape"])
    assert model.output_shape == (None, 1000)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_layers_names_order_inputs_and_weight_shapes_are_kerass(name):
    golden = GOLDEN["models"][name]
    model = small(name)
    parents = inbound_names(model)
    mine = [[l.name, type(l).__name__, [list(w.shape) for w in l.weights], parents[id(l)]] for l in model.layers]
    expected = [[n, cls, [shape for _, shape in ws], ins] for n, cls, ws, ins in golden["layers"]]
    assert len(mine) == len(expected)
    for i, (a, b) in enumerate(zip(mine, expected)):
        assert a == b, f"layer {i}: fastconv {a} != Keras {b}"
    assert model.count_params() == golden["count_params"]
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == golden["trainable_params"]
    assert model.layers[-1].get_config()["activation"] == "softmax"


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_logits_match_kerass_under_the_same_weights(name, backend):
    model = small(name, classifier_activation=None)
    set_weights_by_name(model, name, golden_weights(name))
    images, expected = ARRAYS[f"{name}/images"], ARRAYS[f"{name}/logits"]
    with fc.backend(backend):
        got = model.predict(images, verbose=0)
    assert got.shape == expected.shape == (2, 1000)
    assert max_rel(got, expected) <= RTOL
    # The images' logits differ by far more than the tolerance: the comparison can fail.
    assert np.abs(expected[0] - expected[1]).max() > 100 * RTOL * np.abs(expected).max()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_default_classifier_is_kerass_softmax(name):
    model = small(name)
    set_weights_by_name(model, name, golden_weights(name))
    logits = ARRAYS[f"{name}/logits"].astype(np.float64)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got = model.predict(ARRAYS[f"{name}/images"], verbose=0)
    # Logits within RTOL * scale move each probability p by at most p * 2 * RTOL * scale.
    bound = expected * 2 * RTOL * np.abs(logits).max() + 1e-7
    assert np.all(np.abs(got - expected) <= bound), float(np.max(np.abs(got - expected) / bound))
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_headless_output_shapes_and_pooling_names_are_kerass(name):
    for hw, pooling, shape, last in GOLDEN["models"][name]["headless"]:
        model = BUILDERS[name](include_top=False, pooling=pooling, input_shape=tuple(hw) + (3,))
        assert model.output_shape == (None,) + tuple(shape), (hw, pooling)
        assert model.layers[-1].name == last, (hw, pooling)


def test_headless_without_input_shape_takes_any_size():
    model = efficientnet_b0(include_top=False, pooling="avg")
    assert model.input_shape == (None, None, None, 3)
    x = np.random.default_rng(0).uniform(0, 255, (1, 40, 56, 3)).astype(np.float32)
    assert model.predict(x, verbose=0).shape == (1, 1280)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_one_training_step_reaches_every_weight(name):
    fc.set_seed(0)
    model = small(name, classes=3, classifier_activation=None)
    model.compile(fc.optimizers.SGD(0.01), fc.losses.SparseCategoricalCrossentropy(from_logits=True))
    side = GOLDEN["models"][name]["input_shape"][0]
    x = np.random.default_rng(1).uniform(0, 1, (2, side, side, 3)).astype(np.float32)
    loss = model.train_on_batch(x, np.array([0, 2]))
    assert np.isfinite(loss)
    for w in model.trainable_weights:
        assert w.grad is not None and np.all(np.isfinite(w.grad)), w.name
        assert np.any(w.grad != 0), f"{name}: zero gradient for {w.name}"


def test_names_do_not_depend_on_what_was_built_before_and_do_not_collide_after():
    layers.Conv2D(4, 3)  # takes an auto name; the model's names stay Keras's fresh-session ones
    first = [l.name for l in small("inception_v3").layers]
    assert first == [l[0] for l in GOLDEN["models"]["inception_v3"]["layers"]]
    assert [l.name for l in small("inception_v3").layers] == first
    assert layers.Conv2D(4, 3).name not in first  # a new head's layers get fresh names


def test_input_tensor_is_the_models_input():
    inp = layers.Input((80, 90, 3))
    model = xception(include_top=False, input_tensor=inp, pooling="max")
    assert model.inputs == [inp] and model.output_shape == (None, 2048)
    scaled = layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    model = inception_v3(input_tensor=scaled, classes=5)  # the source Input becomes the model's input
    assert model.inputs == [inp] and model.output_shape == (None, 5)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="weights='imagenet'.*fastconv.applications"):
        inception_v3(weights="imagenet")
    with pytest.raises(ValueError, match="at least 75x75"):
        inception_v3(input_shape=(74, 100, 3))
    with pytest.raises(ValueError, match="at least 71x71"):
        xception(include_top=False, input_shape=(71, 70, 3))
    with pytest.raises(ValueError, match="at least 32x32"):
        efficientnet_b0(input_shape=(31, 32, 3))
    with pytest.raises(ValueError, match="input_shape must be"):
        xception(input_shape=(100, 100))
    with pytest.raises(ValueError, match="static input_shape"):
        xception(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="pooling"):
        efficientnet_b0(include_top=False, pooling="mean")
    with pytest.raises(ValueError, match="classes"):
        efficientnet_b0(classes=0)
    with pytest.raises(ValueError, match="variant"):
        efficientnet("b8")
    with pytest.raises(TypeError, match="input_tensor"):
        xception(input_tensor=np.zeros((1, 71, 71, 3), np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("variant", "1234567")
def test_efficientnet_b1_to_b7_counts_are_kerass(variant):
    model = efficientnet(f"b{variant}")
    assert model.count_params() == GOLDEN["efficientnet_counts"][f"b{variant}"]


# ------------------------------------------------------------------ layer features the models brought
def test_dropout_noise_shape_shares_one_draw_along_size_1_axes():
    x = np.ones((64, 3, 4, 5), np.float32)
    drop = layers.Dropout(0.5, noise_shape=(None, 1, 1, 1), seed=3)
    y = drop(x, training=True).numpy()
    per_sample = y.reshape(64, -1)
    assert np.all(per_sample == per_sample[:, :1])  # one decision per sample
    assert set(np.unique(per_sample)) == {0.0, 2.0} and 10 < np.count_nonzero(per_sample[:, 0]) < 54
    np.testing.assert_array_equal(drop(x, training=False).numpy(), x)
    assert layers.Dropout(0.2, noise_shape=(None, 1, 1, 1)).get_config()["noise_shape"] == [None, 1, 1, 1]
    with pytest.raises(ValueError, match="does not broadcast"):
        layers.Dropout(0.5, noise_shape=(None, 2, 1, 1))(x, training=True)
    with pytest.raises(ValueError, match="rank"):
        layers.Dropout(0.5, noise_shape=(None, 1))(x, training=True)
    with pytest.raises(ValueError, match="noise_shape"):
        layers.Dropout(0.5, noise_shape=(None, 0, 1, 1))


def test_multiply_broadcasts_size_1_axes_with_gradients():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((2, 1, 1, 5)).astype(np.float32)
    ia, ib = layers.Input((3, 4, 5)), layers.Input((1, 1, 5))
    out = layers.multiply([ia, ib])
    assert out.shape == (None, 3, 4, 5)
    ta, tb = fc.autograd.Tensor(a, requires_grad=True), fc.autograd.Tensor(b, requires_grad=True)
    y = layers.Multiply()([ta, tb])
    np.testing.assert_allclose(y.numpy(), a * b, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(tb.grad, a.sum(axis=(1, 2), keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(ta.grad, np.broadcast_to(b, a.shape), rtol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        layers.multiply([ia, layers.Input((3, 2, 5))])


# ------------------------------------------------------------------ live peer (Keras in a subprocess)
def _peers_python():
    explicit = os.environ.get("FASTCONV_PEERS_PYTHON")
    if explicit:
        return explicit
    if importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None:
        return sys.executable
    return None


@pytest.fixture(scope="module")
def keras_weights(tmp_path_factory):
    python = _peers_python()
    if python is None:
        pytest.skip("no Python with tensorflow/keras (set FASTCONV_PEERS_PYTHON)")
    out = tmp_path_factory.mktemp("keras_apps")
    script = os.path.join(GOLDEN_DIR, "make_keras_apps.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([python, script, "peer", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.slow  # about 70 s: Keras builds, calibrates and saves the three models
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_peer_keras_initialised_weights_copied_by_name_give_kerass_logits(name, keras_weights):
    with np.load(keras_weights / f"{name}.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    model = small(name, classifier_activation=None)
    set_weights_by_name(model, name, lambda layer, names, _: [arrays[f"{layer}/{n}"] for n in names])
    used = {f"{l[0]}/{w[0]}" for l in GOLDEN["models"][name]["layers"] for w in l[2]}
    assert used == set(arrays) - {"__images__", "__logits__"}  # every Keras weight was copied
    got = model.predict(arrays["__images__"], verbose=0)
    assert max_rel(got, arrays["__logits__"]) <= RTOL
