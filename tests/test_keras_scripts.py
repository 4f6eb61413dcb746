"""Keras scripts of the course kind, run with only the import changed.

Each test is written as a Keras 3 user writes it (`keras.layers...`, `keras.callbacks...`),
over `import fastconv as keras`. The model definitions shared with the summary goldens live in
tests/keras_course_models.py, so the counts and shapes checked here are the ones real Keras
3.15.1 printed for the very same code (tests/golden/keras_summaries/, parsed by keras_table()).
Data: the embedded UCI digits set upscaled to 28x28 (MNIST-like, no download) or seeded noise.

Not here: model.save / load_model (another module owns whole-model files and their tests).
"""
import csv
import os
import re

import numpy as np
import pytest

import fastconv as keras
from fastconv import layers
from fastconv.layers import clear_session

import keras_course_models as course

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "keras_summaries")


def keras_table(name):
    """What Keras 3 printed for course model `name`: ({layer: (output shape, params)}, totals)
    where totals maps 'Total' / 'Trainable' / 'Non-trainable' to parameter counts."""
    with open(os.path.join(GOLDEN, f"{name}.txt"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    rows, cells = {}, None
    for line in lines:
        if line.startswith("│"):
            parts = [p.strip() for p in line.strip("│").split("│")]
            cells = parts if cells is None else [f"{a} {b}".strip() for a, b in zip(cells, parts)]
        elif cells is not None:  # a rule ends the row (a long cell wraps over several lines)
            layer = cells[0].split(" (")[0]
            rows[layer] = (cells[1], int(cells[2].split()[0].replace(",", "")))
            cells = None
    totals = {m.group(1): int(m.group(2).replace(",", ""))
              for m in re.finditer(r"^ (\w[\w-]*) params: ([\d,]+)", "\n".join(lines), re.M)}
    return rows, totals


def shape_text(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_against_keras(model, name):
    """Every layer's parameter count and output shape, and the totals, as Keras 3 printed."""
    rows, totals = keras_table(name)
    ours = {layer.name: layer for layer in model.layers if not isinstance(layer, layers.InputLayer)}
    assert sorted(ours) == sorted(k for k in rows if not k.startswith("input_layer"))
    for layer_name, (shape, params) in rows.items():
        if layer_name.startswith("input_layer"):
            continue
        layer = ours[layer_name]
        assert (layer.count_params() if layer.built else 0) == params, layer_name
        if shape.startswith("(None"):
            assert shape_text(layer.output_shape) == shape, layer_name
    assert model.count_params() == totals["Total"]
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == totals["Trainable"]
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == totals["Non-trainable"]


@pytest.fixture(autouse=True)
def fresh_session():
    clear_session()  # names restart at dense, dense_1, ... as in a new script (and in the goldens)
    keras.utils.set_random_seed(0)


def digits(n=600):
    """MNIST-like: the embedded digits, 28x28x1 float32 in [0, 1], integer labels."""
    (x, y), (xt, yt) = keras.datasets.digits.load_data(upscale_to=28)
    x = (x[:n].astype("float32") / 255.0)[..., None]
    xt = (xt.astype("float32") / 255.0)[..., None]
    return (x, y[:n].astype("int64")), (xt, yt.astype("int64"))


# -- 1. the MLP three ways, with summary and plot_model --------------------------------------
def test_mlp_three_ways_agree_with_keras_and_with_each_other(tmp_path):
    models = {}
    for name in ("mlp_sequential", "mlp_functional", "mlp_subclassed"):
        clear_session()  # each golden was printed by a fresh Keras session
        models[name] = model = course.SUMMARY_CASES[name](keras)
        check_against_keras(model, name)
        printed = []
        model.summary(print_fn=printed.append)
        assert "Total params: 535,818 (2.04 MB)" in printed[0]
    # The same weights give the same function whichever way the model was written.
    weights = models["mlp_sequential"].get_weights()
    x = np.random.default_rng(1).random((5, 784), dtype=np.float32)
    expected = models["mlp_sequential"].predict(x, verbose=0)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-5)  # softmax rows
    for model in list(models.values())[1:]:
        model.set_weights(weights)
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_plot_model_draws_the_functional_mlp(tmp_path):
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    model = course.mlp_functional(keras)
    path = keras.utils.plot_model(model, to_file=str(tmp_path / "mlp.png"), show_shapes=True,
                                  show_layer_names=True)
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        # five boxes stacked top to bottom (input + 4 layers): taller than wide
        assert picture.size[1] > picture.size[0] > 100


# -- 2. LeNet on MNIST-like digits: validation_split, callbacks, checkpoint -------------------
def test_lenet_fit_validation_split_callbacks_and_checkpoint(tmp_path):
    (x, y), (x_test, y_test) = digits()
    model = course.lenet5(keras)
    check_against_keras(model, "lenet5")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    best = str(tmp_path / "best.weights.npz")
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=2),
        keras.callbacks.ModelCheckpoint(best, monitor="val_accuracy", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.CSVLogger(str(tmp_path / "training.csv")),
    ]
    history = model.fit(x, y, validation_split=0.2, epochs=3, batch_size=32, callbacks=callbacks,
                        verbose=0)
    assert isinstance(history, keras.callbacks.History)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert history.epoch == [0, 1, 2]
    assert history.history["loss"][-1] < history.history["loss"][0]
    # CSVLogger: Keras's columns (epoch, then the sorted keys), one row per epoch, same values.
    with open(tmp_path / "training.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    for key, values in history.history.items():
        np.testing.assert_allclose([float(r[key]) for r in table], values, rtol=1e-6)
    # validation_split holds out the last 20% (Keras: before any shuffling). The checkpoint kept
    # the best epoch by val_accuracy: loaded into a fresh LeNet it scores exactly that.
    n_val = len(x) - int(len(x) * 0.8)
    fresh = course.lenet5(keras)
    fresh.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    fresh.load_weights(best)
    _, val_accuracy = fresh.evaluate(x[-n_val:], y[-n_val:], verbose=0)
    assert val_accuracy == pytest.approx(max(history.history["val_accuracy"]), abs=1e-6)
    # Chance is 0.1; three short epochs of LeNet-5 on the digits are far above it.
    _, test_accuracy = fresh.evaluate(x_test, y_test, verbose=0)
    assert test_accuracy > 0.5


def test_early_stopping_stops_and_restores_best_weights():
    (x, y), _ = digits(200)
    model = course.lenet5(keras)
    # A learning rate this large makes the validation loss climb after the first epochs.
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=2.0), loss="sparse_categorical_crossentropy")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    history = model.fit(x, y, validation_split=0.25, epochs=20, batch_size=50, callbacks=[stop], verbose=0)
    val = history.history["val_loss"]
    assert len(val) < 20 and stop.stopped_epoch == len(val) - 1
    best = int(np.nanargmin(val))
    assert len(val) - 1 - best == 1  # stopped after `patience` epochs without improvement
    assert model.evaluate(x[150:], y[150:], verbose=0) == pytest.approx(val[best], rel=1e-5)


# -- 3. VGG and GoogLeNet blocks, layer by layer ---------------------------------------------
@pytest.mark.parametrize("name", ["vgg_block", "inception_block"])
def test_vgg_and_googlenet_blocks(name):
    model = course.SUMMARY_CASES[name](keras)
    check_against_keras(model, name)
    shape = model.input_shape[1:]
    x = np.random.default_rng(2).random((4,) + tuple(shape), dtype=np.float32)
    y = np.arange(4) % 10
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.predict(x, verbose=0).shape == (4, 10)


def test_googlenet_block_concatenates_the_branches_in_order():
    model = course.inception_block(keras)
    concat = model.get_layer("concatenate")
    branch_ends = ["conv2d", "conv2d_2", "conv2d_4", "conv2d_5"]
    probe = keras.Model(model.inputs, [concat.output] + [model.get_layer(n).output for n in branch_ends])
    x = np.random.default_rng(3).random((2, 28, 28, 64), dtype=np.float32)
    joined, *branches = probe.predict(x, verbose=0)
    np.testing.assert_array_equal(joined, np.concatenate(branches, axis=-1))


# -- 4. the subclassed ResNet: blocks are keras.Model subclasses holding lists of layers -------
def test_subclassed_resnet_with_model_blocks():
    model = course.resnet_subclassed(keras)
    check_against_keras(model, "resnet_subclassed")
    blocks = model.blocks
    assert all(isinstance(b, keras.Model) for b in blocks)
    # Layers held in Python lists are tracked: 5 in the main path, 2 in a projection shortcut.
    assert [len(b.layers) for b in blocks] == [5, 7, 7]
    assert blocks[1].count_params() == 14_720  # Keras 3.15.1 (golden resnet_subclassed.txt)
    rng = np.random.default_rng(4)
    x, y = rng.random((8, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, 8)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    bn = blocks[2].layers[1]
    moving_mean = bn.moving_mean.numpy().copy()
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.allclose(bn.moving_mean.numpy(), moving_mean)  # BN inside a nested block trained
    probs = model.predict(x, verbose=0)
    assert probs.shape == (8, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # training=False is deterministic; the nested blocks pass training= down to their layers.
    np.testing.assert_array_equal(model(x, training=False).numpy(), model(x, training=False).numpy())


# -- 5. the L2 + Dropout CNN --------------------------------------------------------------------
def test_l2_dropout_cnn_losses_and_dropout():
    model = course.l2_dropout_cnn(keras)
    check_against_keras(model, "l2_dropout_cnn")
    kernels = [layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")][:3]
    assert len(model.losses) == 3  # one L2 term per regularised kernel (the last Dense has none)
    penalties = sorted(float(np.asarray(loss)) for loss in model.losses)
    np.testing.assert_allclose(penalties, sorted(1e-4 * float(np.sum(k.astype(np.float64) ** 2)) for k in kernels),
                               rtol=1e-5)
    (x, y), _ = digits(64)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    # evaluate's loss is the cross-entropy plus the L2 penalties, as in Keras
    probs = model.predict(x, verbose=0)
    cross_entropy = -np.mean(np.log(probs[np.arange(len(y)), y]))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(cross_entropy + sum(penalties), rel=1e-4)
    # Dropout: active when training, off for inference
    np.testing.assert_array_equal(model.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0))
    assert not np.allclose(model(x[:8], training=True).numpy(), model(x[:8], training=False).numpy())


# -- 6. fine-tuning with frozen layers ---------------------------------------------------------
def test_fine_tuning_with_frozen_feature_extractor():
    (x, y), _ = digits(128)
    model = course.lenet5(keras)
    for layer in model.layers[:4]:  # conv - pool - conv - pool
        layer.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    printed = []
    model.summary(print_fn=printed.append)
    # Keras 3.15.1 prints these three lines for this model with the first four layers frozen.
    assert printed[0].splitlines()[-3:] == [" Total params: 61,706 (241.04 KB)",
                                            " Trainable params: 59,134 (230.99 KB)",
                                            " Non-trainable params: 2,572 (10.05 KB)"]
    frozen = [w.numpy().copy() for w in model.non_trainable_weights]
    head = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    for before, after in zip(frozen, model.non_trainable_weights):
        np.testing.assert_array_equal(after.numpy(), before)
    assert all(not np.array_equal(w.numpy(), b) for w, b in zip(model.trainable_weights, head))


def test_functional_model_reuses_a_trained_base():
    """Transfer learning in the functional style: a frozen base model called as a layer."""
    base = course.lenet5(keras)
    base.trainable = False
    features = keras.Model(base.inputs, base.layers[-2].output)  # up to the 84-unit layer
    inputs = keras.Input(shape=(28, 28, 1))
    outputs = layers.Dense(3, activation="softmax")(features(inputs, training=False))
    model = keras.Model(inputs, outputs)
    assert model.count_params() == 61_706 - 850 + 84 * 3 + 3
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 84 * 3 + 3
    assert model.output_shape == (None, 3)


def test_feature_extractor_from_layer_outputs_and_clear_errors():
    model = course.lenet5(keras)
    # (Keras 3 refuses model.input on a Sequential never called on data; fastconv gives it.)
    assert model.input is model.inputs[0] and model.output is model.outputs[0]
    conv = model.get_layer("conv2d")
    extractor = keras.Model(inputs=model.inputs, outputs=conv.output)
    assert [layer.name for layer in extractor.layers] == ["input_layer", "conv2d"]
    x = digits(4)[0][0]
    maps = extractor.predict(x, verbose=0)
    assert maps.shape == (4, 28, 28, 6)
    kernel, bias = conv.get_weights()
    expected = np.maximum(keras.functional.conv2d(x, kernel, bias, padding="same"), 0)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(AttributeError, match="has not been called on graph tensors"):
        _ = layers.Dense(3).output
    with pytest.raises(AttributeError, match="subclassed"):
        _ = course.mlp_subclassed(keras).output
    with pytest.raises(AttributeError, match="input shape is unknown"):
        _ = course.mlp_unbuilt(keras).inputs


# -- the fine-tuning course script: checkpoint whole models, load_model, freeze, retrain ------
def test_checkpoint_load_model_freeze_and_retrain(tmp_path):
    (x, y), (x_test, y_test) = digits(400)
    model = course.lenet5(keras)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    path = str(tmp_path / "lenet.keras")
    model.fit(x, y, epochs=2, batch_size=32, verbose=0,
              callbacks=[keras.callbacks.ModelCheckpoint(path)])  # whole model, every epoch
    loaded = keras.models.load_model(path)
    check_against_keras(loaded, "lenet5")  # the same shapes and counts after the round trip
    np.testing.assert_array_equal(loaded.predict(x_test[:16], verbose=0), model.predict(x_test[:16], verbose=0))
    assert loaded.optimizer.iterations == model.optimizer.iterations  # compile state came back
    # MNIST-C style: corrupted digits (shot noise), frozen features, retrained head.
    for layer in loaded.layers[:4]:
        layer.trainable = False
    loaded.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                   loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    frozen = [w.numpy().copy() for w in loaded.non_trainable_weights]
    noise = np.random.default_rng(0)
    shifted, shifted_test = (np.clip(a + noise.normal(0, 0.35, a.shape), 0, 1).astype("float32")
                             for a in (x, x_test))
    _, before = loaded.evaluate(shifted_test, y_test, verbose=0)
    loaded.fit(shifted, y, epochs=3, batch_size=32, verbose=0)
    _, after = loaded.evaluate(shifted_test, y_test, verbose=0)
    for old, w in zip(frozen, loaded.non_trainable_weights):
        np.testing.assert_array_equal(w.numpy(), old)
    assert after > before + 0.05, (before, after)
