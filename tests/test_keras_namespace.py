"""`import fastconv as keras`: Keras scripts with only the import changed. The top-level names
and modules, every `from fastconv.X import Y` path tutorials type, the errors for names
fastconv lacks, and a light import (no matplotlib)."""
import importlib

import numpy as np
import pytest

import fastconv as keras  # the one line a Keras script changes

from fastconv_subprocess import run_python


def _data(n=32, d=20, classes=3):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, classes, n)


def _compile_fit(model, x, y):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    lines = []
    model.summary(print_fn=lines.append)
    assert any("Total params" in line for line in lines)
    return model


# Dense(20 -> 16) = 20*16 + 16 = 336; Dense(16 -> 3) = 16*3 + 3 = 51; total 387.
MLP_PARAMS = 387


def test_mlp_sequential():
    x, y = _data()
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    assert _compile_fit(model, x, y).count_params() == MLP_PARAMS


def test_mlp_functional():
    x, y = _data()
    inputs = keras.Input(shape=(20,))
    h = keras.layers.Dense(16, activation=keras.activations.relu)(inputs)
    outputs = keras.layers.Dense(3, activation=keras.activations.softmax)(h)
    model = keras.Model(inputs=inputs, outputs=outputs)
    assert _compile_fit(model, x, y).count_params() == MLP_PARAMS


def test_mlp_subclassed():
    class MLP(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(16, activation="gelu")
            self.out = keras.layers.Dense(3, activation="softmax")

        def call(self, inputs, training=None):
            return self.out(self.hidden(inputs))

    x, y = _data()
    assert _compile_fit(MLP(), x, y).count_params() == MLP_PARAMS


def test_lenet_has_keras_parameter_count():
    # LeNet-5, modern form (ReLU, max pooling, 'same' first conv), on 28x28x1:
    #   Conv2D(6, 5, same):  5*5*1*6 + 6    =    156   -> 28x28x6 -> pool 14x14x6
    #   Conv2D(16, 5):       5*5*6*16 + 16  =  2,416   -> 10x10x16 -> pool 5x5x16 = 400
    #   Dense(120):          400*120 + 120  = 48,120
    #   Dense(84):           120*84 + 84    = 10,164
    #   Dense(10):           84*10 + 10     =    850
    #   total                               = 61,706
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(6, 5, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 5, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(120, activation="relu"),
        keras.layers.Dense(84, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    assert model.count_params() == 61706
    rng = np.random.default_rng(1)
    x, y = rng.random((16, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 16)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert model.predict(x[:2], verbose=0).shape == (2, 10)


@pytest.mark.parametrize("module", [
    "layers", "models", "optimizers", "optimizers.schedules", "losses", "metrics", "callbacks",
    "regularizers", "initializers", "activations", "utils", "datasets", "preprocessing",
    "preprocessing.image", "applications"])
def test_keras_modules_are_attributes(module):
    obj = keras
    for part in module.split("."):
        obj = getattr(obj, part)
    assert obj is importlib.import_module(f"fastconv.{module}")


def test_keras_import_paths():
    from fastconv.layers import Conv2D, Dense  # noqa: F401
    from fastconv.models import Model, Sequential, load_model  # noqa: F401
    from fastconv.preprocessing.image import image_dataset_from_directory  # noqa: F401
    from fastconv.preprocessing import image_dataset_from_directory as from_preprocessing
    from fastconv.utils import image_dataset_from_directory as from_utils
    from fastconv.layers import RandomFlip, RandomRotation, RandomTranslation, RandomZoom
    from fastconv import preprocessing
    assert from_preprocessing is from_utils is image_dataset_from_directory
    assert (preprocessing.RandomFlip, preprocessing.RandomRotation, preprocessing.RandomTranslation,
            preprocessing.RandomZoom) == (RandomFlip, RandomRotation, RandomTranslation, RandomZoom)
    from fastconv.datasets import fashion_mnist, mnist
    from fastconv.optimizers.schedules import ExponentialDecay  # noqa: F401
    from fastconv.activations import gelu, softmax  # noqa: F401
    from fastconv import Input, Model as M, Sequential as S  # noqa: F401
    assert callable(mnist.load_data) and callable(fashion_mnist.load_data)
    assert M is Model and S is Sequential


def test_to_categorical_path_when_present():
    # utils.to_categorical is another change's (utils); the path is checked once it is there.
    if "to_categorical" not in vars(keras.utils):
        pytest.skip("fastconv.utils.to_categorical not merged yet")
    from fastconv.utils import to_categorical
    assert to_categorical([0, 2], 3).tolist() == [[1, 0, 0], [0, 0, 1]]


def test_load_model_refuses_hdf5_whole_models_naming_the_alternatives():
    with pytest.raises(ValueError, match=r"HDF5.*'\.keras'.*save_weights"):
        keras.models.load_model("m.h5")


@pytest.mark.parametrize("expr, says", [
    ("keras.applications.NASNetLarge", "fastconv.applications does not provide 'NASNetLarge'.*provides VGG16"),
    ("keras.mixed_precision", "fastconv does not provide 'mixed_precision'"),
    ("keras.layers.SomethingMissing", "fastconv.layers does not provide 'SomethingMissing'"),
    ("keras.layers.Conv2d", "Did you mean 'Conv2D'"),
    ("keras.layers.Dens", "Did you mean 'Dense'"),
    ("keras.Layers", "Did you mean 'layers'"),
    ("keras.GradientTape", "backward"),
    ("keras.config.list_physical_devices", "set_backend"),
    ("keras.preprocessing.image.DataFrameIterator", "flow_from_directory"),
    ("keras.activations.gleu", "Did you mean 'gelu'"),
    ("keras.optimizers.legacy", "fastconv.optimizers.Adam"),
    ("keras.layers.experimental", "RandomFlip"),
])
def test_missing_names_say_fastconv_lacks_them(expr, says):
    with pytest.raises(AttributeError, match=says):
        eval(expr, {"keras": keras})


@pytest.mark.parametrize("statement, says", [
    ("from fastconv.applications import NASNetMobile", "fastconv.applications does not provide 'NASNetMobile'"),
    ("from fastconv.layers import Conv2d", "Did you mean 'Conv2D'"),
    ("from fastconv import GradientTape", "backward"),
])
def test_from_imports_of_missing_names_keep_the_message(statement, says):
    with pytest.raises(ImportError, match=says):
        exec(statement, {})


def test_private_and_dunder_names_stay_plain():
    # hasattr probes from pytest, doctest and inspect must get a plain, quick AttributeError.
    for module in (keras, keras.layers, keras.applications, keras.activations):
        assert not hasattr(module, "__wrapped__")
        assert not hasattr(module, "_pytestfixturefunction")
        with pytest.raises(AttributeError, match="has no attribute '__wrapped__'"):
            module.__wrapped__
    assert not hasattr(keras.layers, "NotALayer")  # AttributeError, so hasattr stays usable


def test_import_is_light():
    # Plotting, image decoding and HDF5 load only when used.
    code = ("import sys, fastconv; heavy = [m for m in ('matplotlib', 'PIL', 'h5py') if m in sys.modules]; "
            "print(heavy)")
    result = run_python(["-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
