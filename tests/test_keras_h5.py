"""Keras HDF5 weight files (fastconv/saving/keras_h5.py): the committed Keras-written fixture
(tests/golden/keras_h5, made by its make_fixture.py) loads in both layouts and reproduces
Keras's predictions; fastconv's `.weights.h5` has Keras 3's layout and loads back (and in
Keras, where it is installed); errors are strict and all-or-nothing."""
import os
import subprocess
import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

import fastconv as fc  # noqa: E402
from keras_fixture import EXPECTED, FIXTURE, KERAS3, LEGACY, small_cnn  # noqa: E402

RTOL = 1e-5  # float32 forward of a 4-layer CNN, relative to the largest output


def _rel_diff(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _expected():
    e = np.load(EXPECTED)
    return e["x"], e["y"]


def _snapshot(model):
    return [np.array(w.numpy()) for w in model.weights]


@pytest.mark.parametrize("path", [LEGACY, KERAS3], ids=["legacy", "keras3"])
def test_fixture_reproduces_keras_predictions(path):
    x, y = _expected()
    model = small_cnn()
    status = model.load_weights(path)
    assert status.missing == [] and status.unexpected == [] and status.mismatched == []
    assert _rel_diff(model.predict(x, verbose=0), y) <= RTOL


@pytest.mark.parametrize("path", [LEGACY, KERAS3], ids=["legacy", "keras3"])
def test_loads_by_order_or_class_when_names_differ(path):
    # Auto-named layers (conv2d_7, ...): legacy files load in weighted-layer order as Keras does,
    # Keras 3 files by class and per-class number.
    from fastconv import layers
    x, y = _expected()
    inputs = layers.Input((24, 24, 3))
    h = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    h = layers.ReLU()(layers.BatchNormalization()(h))
    h = layers.ReLU(6.0)(layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)))
    h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(32, 1)(h)))
    h = layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    out = layers.Dense(4, activation="softmax")(layers.GlobalAveragePooling2D()(h))
    model = fc.Model(inputs, out)
    model.load_weights(path)
    assert _rel_diff(model.predict(x, verbose=0), y) <= RTOL


def test_save_writes_keras3_layout_and_loads_back(tmp_path):
    x, y = _expected()
    model = small_cnn()
    model.load_weights(LEGACY)
    out = tmp_path / "mine.weights.h5"
    model.save_weights(out)
    with h5py.File(out, "r") as f:
        assert sorted(f["layers"]) == ["batch_normalization", "batch_normalization_1", "batch_normalization_2",
                                       "conv2d", "conv2d_1", "conv2d_2", "dense", "depthwise_conv2d"]
        assert f["layers/conv2d_1/vars"].attrs["name"] == "block1_pw"
        assert f["layers/conv2d_1/vars/0"].shape == (1, 1, 16, 32)
        assert [f["layers/batch_normalization/vars"][str(i)].shape for i in range(4)] == [(16,)] * 4
        with h5py.File(LEGACY, "r") as legacy:  # the same arrays as Keras's own file
            np.testing.assert_array_equal(f["layers/batch_normalization/vars/2"][()],
                                          legacy["stem_bn/stem_bn/moving_mean"][()])
    other = small_cnn()
    other.load_weights(out)
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    assert _rel_diff(other.predict(x, verbose=0), y) <= RTOL


def test_mismatch_lists_every_layer_and_assigns_nothing():
    model = small_cnn(classes=5, input_shape=(24, 24, 3))
    before = _snapshot(model)
    with pytest.raises(ValueError) as err:
        model.load_weights(LEGACY)
    msg = str(err.value)
    assert "predictions" in msg and "(32, 4)" in msg and "(32, 5)" in msg and "nothing was assigned" in msg
    for a, b in zip(before, _snapshot(model)):
        np.testing.assert_array_equal(a, b)
    # skip_mismatch loads the rest and reports the skipped layer
    status = model.load_weights(LEGACY, skip_mismatch=True)
    assert status.mismatched == [("predictions", ((32, 4), (4,)), ((32, 5), (5,)))]
    assert not np.array_equal(model.get_layer("stem_conv").kernel.numpy(), before[0])


def test_base_without_top_needs_by_name():
    base = small_cnn(include_top=False)
    with pytest.raises(ValueError, match="file layers that the model lacks: predictions"):
        base.load_weights(KERAS3)
    base.load_weights(KERAS3, by_name=True)
    full = small_cnn()
    full.load_weights(KERAS3)
    for layer in base.layers[1:]:  # after the input layer
        for mine, theirs in zip(layer.weights, full.get_layer(layer.name).weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert len(base.weights) == len(full.weights) - 2


def test_bad_files_are_clear_errors(tmp_path):
    model = small_cnn()
    not_h5 = tmp_path / "x.h5"
    not_h5.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="cannot read .*x.h5 as HDF5"):
        model.load_weights(not_h5)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        model.load_weights(tmp_path / "missing.h5")
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_dataset("something", data=np.zeros(3))
    with pytest.raises(ValueError, match="neither Keras layout"):
        model.load_weights(empty)
    strings = tmp_path / "strings.weights.h5"
    with h5py.File(strings, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.array([b"a", b"b"]))
    with pytest.raises(ValueError, match="not a numeric weight array"):
        model.load_weights(strings)
    with pytest.raises(ValueError, match="by_name=True applies to Keras HDF5"):
        model.load_weights(tmp_path / "w.npz", by_name=True)


def test_nan_weights_load_and_propagate(tmp_path):
    x, _ = _expected()
    model = small_cnn()
    model.load_weights(LEGACY)
    model.get_layer("stem_bn").moving_mean.assign(np.full(16, np.nan, np.float32))
    path = tmp_path / "nan.weights.h5"
    model.save_weights(path)
    other = small_cnn()
    other.load_weights(path)
    assert np.isnan(other.predict(x[:1], verbose=0)).all()


def _peer_python():
    """A Python with Keras 3 (this one, or the peers' venv named by FASTCONV_PEER_PYTHON)."""
    exe = os.environ.get("FASTCONV_PEER_PYTHON", sys.executable)
    ok = subprocess.run([exe, "-c", "import keras, h5py"], capture_output=True).returncode == 0
    if not ok:
        pytest.skip("Keras 3 not installed (set FASTCONV_PEER_PYTHON to a Python that has it)")
    return exe


def test_keras_loads_fastconv_weights_h5(tmp_path):
    exe = _peer_python()
    model = small_cnn()
    model.load_weights(LEGACY)
    # Move the weights away from Keras's values, so that Keras reading them proves something.
    model.get_layer("predictions").bias.assign(np.array([0.5, -0.5, 0.25, 0.0], np.float32))
    path = tmp_path / "from_fastconv.weights.h5"
    model.save_weights(path)
    x, _ = _expected()
    np.save(tmp_path / "want.npy", model.predict(x, verbose=0))
    script = (
        "import os, sys; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; sys.path.insert(0, sys.argv[1])\n"
        "import numpy as np, make_fixture\n"
        "m = make_fixture.build(); m.load_weights(sys.argv[2])\n"
        "x = np.load(os.path.join(sys.argv[1], 'expected.npz'))['x']; want = np.load(sys.argv[3])\n"
        "print('REL', float(np.abs(m.predict(x, verbose=0) - want).max() / np.abs(want).max()))\n")
    run = subprocess.run([exe, "-c", script, FIXTURE, str(path), str(tmp_path / "want.npy")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rel = float(run.stdout.split("REL")[-1])
    assert rel <= RTOL


def _branchy():
    sys.path.insert(0, FIXTURE)
    try:
        import branchy
    finally:
        sys.path.remove(FIXTURE)
    return branchy.build(fc.layers, fc.Input, fc.Model)


# Keras 3.15.1's model.layers for tests/golden/keras_h5/branchy.py (printed by Keras itself).
KERAS_ORDER = ["input_layer", "stem", "b2_1x1", "b3_1x1", "b2_bn", "b3_3x3a", "b4_pool", "b1_1x1", "b2_3x3",
               "b3_3x3b", "b4_1x1", "mix", "shortcut", "add", "post_bn", "gap", "head"]


def test_branchy_graph_is_numbered_in_keras_order(tmp_path):
    model = _branchy()
    assert [l.name for l in model.layers][1:] == KERAS_ORDER[1:]  # the input's name is auto
    model.save_weights(tmp_path / "b.weights.h5")
    with h5py.File(tmp_path / "b.weights.h5", "r") as f:
        convs = [KERAS_ORDER[i] for i in range(len(KERAS_ORDER)) if KERAS_ORDER[i] not in (
            "input_layer", "b2_bn", "b4_pool", "mix", "add", "post_bn", "gap", "head")]
        for i, name in enumerate(convs):
            assert f[f"layers/conv2d{'_' + str(i) if i else ''}/vars"].attrs["name"] == name


def test_keras_loads_fastconv_branchy_weights(tmp_path):
    exe = _peer_python()
    model = _branchy()
    path = tmp_path / "branchy.weights.h5"
    model.save_weights(path)
    x = np.random.default_rng(2).random((2, 16, 16, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", model.predict(x, verbose=0))
    script = (
        "import os, sys; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; sys.path.insert(0, sys.argv[1])\n"
        "import numpy as np, keras, branchy\n"
        "m = branchy.build(keras.layers, keras.Input, keras.Model); m.load_weights(sys.argv[2])\n"
        "want = np.load(sys.argv[4])\n"
        "print('REL', float(np.abs(m.predict(np.load(sys.argv[3]), verbose=0) - want).max() / np.abs(want).max()))\n")
    run = subprocess.run([exe, "-c", script, FIXTURE, str(path), str(tmp_path / "x.npy"), str(tmp_path / "want.npy")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert float(run.stdout.split("REL")[-1]) <= RTOL


def test_by_name_refuses_ambiguous_names():
    from fastconv import layers
    inputs = layers.Input((4,))
    model = fc.Model(inputs, layers.Dense(2, name="same")(layers.Dense(3, name="same")(inputs)))
    with pytest.raises(ValueError, match="unique layer names.*'same'"):
        model.load_weights(KERAS3, by_name=True)
