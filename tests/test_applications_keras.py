"""Every fastconv.applications model against the same Keras application (where TensorFlow/Keras 3
is installed; skipped otherwise, as in CI): Keras builds it with random weights and random
BatchNormalization statistics, saves both HDF5 layouts (legacy and Keras 3 .weights.h5),
fastconv loads each through `weights=` and predicts the same images. Tolerance: max relative
difference (max |ours - keras| / max |keras|) 1e-4 on the logits. The other way round: Keras
loads fastconv's .weights.h5 of the model and predicts the same.

Run the table for the report with:  python tests/test_applications_keras.py
"""
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

import fastconv.applications as apps  # noqa: E402

RTOL = 1e-4
SIZE = 64  # small; Keras's minimum is 32 for most, more for InceptionV3 and Xception (MIN_SIZE)
NAMES = ["VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2",
         "DenseNet121", "DenseNet169", "DenseNet201", "MobileNet", "MobileNetV2", "InceptionV3", "Xception",
         "EfficientNetB0"]
MIN_SIZE = {"InceptionV3": 75, "Xception": 71}  # Keras's minimum where it is above SIZE


def _keras_files(name, folder, seed=0, size=SIZE):
    from keras.src.legacy.saving import legacy_h5_format
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10,
                                              classifier_activation=None)
    rng = np.random.default_rng(seed)
    draw = {"gamma": lambda c: rng.uniform(0.5, 1.5, c), "beta": lambda c: rng.normal(0, 0.1, c),
            "moving_mean": lambda c: rng.normal(0, 0.1, c), "moving_variance": lambda c: rng.uniform(0.5, 1.5, c)}
    for layer in model.layers:  # random BN statistics (and scales, where the layer has them)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([draw[w.name](w.shape[0]) for w in layer.weights])
    legacy, new = os.path.join(folder, f"{name}_legacy.h5"), os.path.join(folder, f"{name}.weights.h5")
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    model.save_weights(new)
    return model, legacy, new


def _renamed_copy(legacy, folder):
    """The legacy file with every layer renamed (as in Keras 2-era files: res2a_branch2a, ...):
    fastconv must then load by order, as Keras does."""
    import shutil
    path = os.path.join(folder, "renamed_" + os.path.basename(legacy))
    shutil.copy(legacy, path)
    with h5py.File(path, "a") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        for n in names:
            f.move(n, "old_" + n)
        f.attrs["layer_names"] = np.array([("old_" + n).encode() for n in names])
    return path


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def compare(name, folder, size=None):
    """{layout: max relative difference} for one application (and Keras reading our file)."""
    size = size or max(SIZE, MIN_SIZE.get(name, 0))
    kmodel, legacy, new = _keras_files(name, folder, size=size)
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    want = kmodel.predict(x, verbose=0)
    out = {}
    for layout, path in (("legacy", legacy), ("keras3", new), ("legacy by order", _renamed_copy(legacy, folder))):
        ours = getattr(apps, name)(weights=path, input_shape=(size, size, 3), classes=10, classifier_activation=None)
        out[layout] = _rel(ours.predict(x, verbose=0), want)
    mine = os.path.join(folder, f"{name}_fastconv.weights.h5")
    ours.save_weights(mine)
    other = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10,
                                              classifier_activation=None)
    other.load_weights(mine)
    out["keras reads ours"] = _rel(other.predict(x, verbose=0), want)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_application_matches_keras(name, tmp_path):
    diffs = compare(name, str(tmp_path))
    assert all(d <= RTOL for d in diffs.values()), diffs


@pytest.mark.parametrize("name", ["MobileNetV2", "MobileNet", "ResNet50V2", "Xception"])
def test_odd_input_size_matches_keras(name, tmp_path):
    # Strided blocks pad by input parity (MobileNetV2's correct_pad; TF 'same' elsewhere).
    diffs = compare(name, str(tmp_path), size=77)
    assert all(d <= RTOL for d in diffs.values()), diffs


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        print("| model | legacy .h5 | Keras 3 .weights.h5 | legacy, renamed layers (by order) | Keras reads fastconv's .weights.h5 |")
        for name in sys.argv[1:] or NAMES:
            d = compare(name, folder)
            print(f"| {name} | {d['legacy']:.2e} | {d['keras3']:.2e} | {d['legacy by order']:.2e} | "
                  f"{d['keras reads ours']:.2e} |", flush=True)
