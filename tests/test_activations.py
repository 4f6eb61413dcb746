"""fastconv.activations: values against NumPy formulas (float64, against math.erf for GELU),
gradients by float64 central differences on the numpy backend, the cpu and emulated cuda
backends equal to numpy within float32 tolerance, NaN propagation, and string vs function
forms giving the same model output."""
import math

import numpy as np
import pytest

import fastconv
from fastconv import activations, layers, models
from fastconv.autograd import Tensor
from fastconv.reference.gradcheck import check_grad

import cuda_emulation

SELU_A, SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# name -> (function, NumPy formula in float64)
FORMULAS = {
    "relu": (activations.relu, lambda x: np.maximum(x, 0)),
    "sigmoid": (activations.sigmoid, _sig),
    "tanh": (activations.tanh, np.tanh),
    "softmax": (activations.softmax, _softmax),
    "elu": (activations.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0)))),
    "selu": (activations.selu, lambda x: SELU_S * np.where(x > 0, x, SELU_A * np.expm1(np.minimum(x, 0)))),
    "gelu": (activations.gelu, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    "swish": (activations.swish, lambda x: x * _sig(x)),
    "silu": (activations.silu, lambda x: x * _sig(x)),
    "leaky_relu": (activations.leaky_relu, lambda x: np.where(x >= 0, x, 0.2 * x)),
    "hard_sigmoid": (activations.hard_sigmoid, lambda x: np.clip(x + 3, 0, 6) / 6),
    "linear": (activations.linear, lambda x: x),
    "relu6": (activations.relu6, lambda x: np.clip(x, 0, 6)),
    "softplus": (activations.softplus, lambda x: np.log1p(np.exp(x))),
    "softsign": (activations.softsign, lambda x: x / (1 + np.abs(x))),
    "mish": (activations.mish, lambda x: x * np.tanh(np.log1p(np.exp(x)))),
    "exponential": (activations.exponential, np.exp),
}
NAMES = sorted(FORMULAS)


def _points(dtype=np.float64):
    # Away from the kinks (0 for relu/leaky_relu/elu, -3/3 for hard_sigmoid, 6 for relu6) so
    # that central differences are valid everywhere.
    x = np.random.default_rng(0).uniform(-5, 5, (3, 7))
    for kink in (0.0, -3.0, 3.0, 6.0):
        x[np.abs(x - kink) < 1e-2] += 0.05
    return x.astype(dtype)


def _value(fn, x):
    y = fn(x)
    return y.numpy() if isinstance(y, Tensor) else np.asarray(y)


@pytest.mark.parametrize("name", NAMES)
def test_values_match_the_formula_in_float64(numpy_backend, name):
    fn, formula = FORMULAS[name]
    x = _points()
    np.testing.assert_allclose(_value(fn, x), formula(x), rtol=1e-6, atol=1e-7)


def test_golden_values(numpy_backend):
    # Hand-checkable points: gelu(1) = Phi(1) = 0.8413447460685429 (the normal CDF at 1),
    # selu(-1) = SCALE * ALPHA * (e^-1 - 1), hard_sigmoid(1.5) = 4.5 / 6.
    x = np.array([-1.0, 1.0, 1.5])
    assert activations.gelu(x).numpy()[1] == pytest.approx(0.8413447460685429, rel=1e-7)
    assert activations.selu(x).numpy()[0] == pytest.approx(1.7580993408473766 * (math.exp(-1) - 1), rel=1e-12)
    assert activations.hard_sigmoid(x).numpy()[2] == pytest.approx(0.75, rel=1e-12)
    assert activations.leaky_relu(x).numpy()[0] == pytest.approx(-0.2, rel=1e-12)
    assert activations.gelu(x, approximate=True).numpy()[1] == pytest.approx(0.8411919906082768, rel=1e-7)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "linear"])
def test_gradients_by_central_differences(numpy_backend, name):
    fn = FORMULAS[name][0]
    x = _points()
    dy = np.random.default_rng(1).standard_normal(x.shape)
    t = Tensor(x.copy(), requires_grad=True)
    (fn(t) * dy).sum().backward()
    # GELU's forward erf is a 1.2e-7 fit whose derivative differs from erf's exact one by ~1e-7.
    atol = 1e-6 if name == "gelu" else 1e-7
    check_grad(lambda a: np.sum(_value(fn, a) * dy), x, t.grad, rtol=1e-5, atol=atol, name=name)


@pytest.mark.parametrize("name", NAMES)
def test_cpu_and_emulated_cuda_equal_numpy(monkeypatch, name):
    fn = FORMULAS[name][0]
    x = _points(np.float32)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    results = {}
    fake = cuda_emulation.install(monkeypatch)
    before = fastconv.get_backend()
    try:
        for backend in ("numpy", "cpu", "cuda"):
            with fastconv.backend(backend):
                data = fake.asarray(x) if backend == "cuda" else x.copy()
                t = Tensor(data, requires_grad=True)
                y = fn(t)
                (y * (fake.asarray(dy) if backend == "cuda" else dy)).sum().backward()
                results[backend] = cuda_emulation.host(y.data), cuda_emulation.host(t.grad)
    finally:
        fastconv.set_backend(before)
    for backend in ("cpu", "cuda"):
        np.testing.assert_allclose(results[backend][0], results["numpy"][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(results[backend][1], results["numpy"][1], rtol=1e-5, atol=1e-6)
        assert results[backend][0].dtype == np.float32


@pytest.mark.parametrize("name", [n for n in NAMES if n != "softmax"])
def test_nan_propagates(numpy_backend, name):
    y = _value(FORMULAS[name][0], np.array([np.nan, 1.0], np.float32))
    assert np.isnan(y[0]) and not np.isnan(y[1])


@pytest.mark.parametrize("name", ["relu", "gelu", "elu", "selu", "swish", "leaky_relu", "hard_sigmoid",
                                  "softmax", "tanh", "linear"])
def test_string_and_function_forms_give_the_same_model(name):
    x = np.random.default_rng(3).standard_normal((4, 6, 6, 2)).astype(np.float32)

    def build(act):
        fastconv.set_seed(7)
        return models.Sequential([layers.Input((6, 6, 2)), layers.Conv2D(3, 3, activation=act),
                                  layers.Flatten(), layers.Dense(5, activation=act), layers.Activation(act)])

    by_name, by_fn = build(name), build(getattr(activations, name))
    np.testing.assert_array_equal(by_name.predict(x, verbose=0), by_fn.predict(x, verbose=0))
    assert by_name.layers[0].get_config()["activation"] == by_fn.layers[0].get_config()["activation"]


def test_fused_function_takes_the_fused_path():
    # activation=activations.relu is stored as the name, so the conv kernel applies it in place.
    assert layers.Conv2D(2, 3, activation=activations.relu).activation == "relu"
    assert layers.Dense(2, activation=activations.gelu).activation == "gelu"


def test_get_serialize_deserialize():
    assert activations.get("GELU") is activations.gelu
    assert activations.get(None) is activations.linear
    assert activations.get("swish") is activations.silu
    custom = lambda x: x  # noqa: E731
    assert activations.get(custom) is custom
    for name in ("relu", "gelu", "hard_sigmoid", "leaky_relu"):
        fn = activations.get(name)
        assert activations.deserialize(activations.serialize(fn)) is fn
    assert activations.deserialize("mine", custom_objects={"mine": custom}) is custom
    with pytest.raises(ValueError, match="did you mean 'gelu'"):
        activations.get("gleu")
    with pytest.raises(ValueError, match="did you mean 'gelu'"):
        layers.Dense(2, activation="gleu")


def test_keras_arguments():
    x = np.array([-2.0, -0.5, 0.5, 8.0])
    np.testing.assert_allclose(activations.leaky_relu(x, negative_slope=0.1).numpy(), [-0.2, -0.05, 0.5, 8.0])
    np.testing.assert_allclose(activations.elu(x, alpha=0.5).numpy()[:2], 0.5 * np.expm1(x[:2]))
    np.testing.assert_allclose(activations.relu(x, max_value=6.0).numpy(), [0, 0, 0.5, 6.0])
    np.testing.assert_allclose(activations.relu(x, negative_slope=0.5, threshold=1.0).numpy(),
                               [-1.5, -0.75, -0.25, 8.0])
    np.testing.assert_allclose(activations.softmax(np.array([[1.0, 2.0], [3.0, 3.0]]), axis=0).numpy(),
                               _softmax(np.array([[1.0, 3.0], [2.0, 3.0]])).T)


def test_large_inputs_stay_finite_with_finite_gradients(numpy_backend):
    # elu/selu take exp of min(x, 0) and softplus of -|x|: no inf in an unused branch.
    x = np.array([-1000.0, 1000.0])
    for name in ("elu", "selu", "softplus", "gelu", "swish", "mish"):
        t = Tensor(x.copy(), requires_grad=True)
        y = FORMULAS[name][0](t)
        y.sum().backward()
        assert np.isfinite(y.numpy()).all() and np.isfinite(t.grad).all(), name
