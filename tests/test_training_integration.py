"""End-to-end training behaviour across the whole stack (issue 4's must-pass list)."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import callbacks, layers, models, optimizers


def small_cnn(seed=0, dropout=0.0):
    fc.set_seed(seed)
    return models.Sequential([
        layers.Conv2D(4, 3, padding="same", input_shape=(8, 8, 1)),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.MaxPooling2D(2),
        layers.Conv2D(6, 3, activation="relu"),
        layers.Flatten(),
        layers.Dropout(dropout),
        layers.Dense(3),
    ])


def toy_data(n=64, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 8, 1)).astype(np.float32)
    # class = which third of the image (by rows) is brightest: learnable, roughly balanced
    y = np.stack([x[:, :3].mean((1, 2, 3)), x[:, 3:5].mean((1, 2, 3)), x[:, 5:].mean((1, 2, 3))], 1).argmax(1)
    return x, y


def test_numpy_and_cpu_backends_give_same_losses():
    x, y = toy_data(32)
    losses = {}
    for name in ("numpy", "cpu"):
        with fc.backend(name):
            model = small_cnn(seed=3)
            model.compile(optimizers.SGD(0.05, momentum=0.9),
                          fc.losses.SparseCategoricalCrossentropy(from_logits=True))
            losses[name] = [model.train_on_batch(x, y) for _ in range(5)]
    lnp = np.array([float(np.ravel(v)[0]) for v in losses["numpy"]])
    lcpu = np.array([float(np.ravel(v)[0]) for v in losses["cpu"]])
    assert lnp[-1] < lnp[0]
    np.testing.assert_allclose(lcpu, lnp, rtol=2e-4, atol=2e-5)


def test_small_cnn_overfits_64_samples():
    x, y = toy_data(64)
    model = small_cnn(seed=5)
    model.compile(optimizers.Adam(0.01), fc.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=16, epochs=60, verbose=0)
    assert hist.history["accuracy"][-1] == 1.0
    assert model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] == 1.0


def test_same_seed_same_numbers():
    x, y = toy_data(32)
    runs = []
    for _ in range(2):
        model = small_cnn(seed=11, dropout=0.3)
        model.compile("sgd", fc.losses.SparseCategoricalCrossentropy(from_logits=True))
        h = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=True)
        runs.append((h.history["loss"], [w.copy() for w in model.get_weights()]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_early_stopping_and_reload(tmp_path):
    x, y = toy_data(64)
    model = small_cnn(seed=7)
    model.compile(optimizers.Adam(0.01), fc.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    path = str(tmp_path / "best.weights.npz")
    cbs = [callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True, save_weights_only=True),
           callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)]
    hist = model.fit(x, y, batch_size=16, epochs=40, verbose=0, validation_split=0.25, callbacks=cbs)
    best = min(hist.history["val_loss"])
    assert len(hist.history["val_loss"]) < 40  # stopped early
    model2 = small_cnn(seed=99)
    model2.build((None, 8, 8, 1))
    model2.load_weights(path)
    model2.compile(optimizers.Adam(0.01), fc.losses.SparseCategoricalCrossentropy(from_logits=True))
    for a, b in zip(model.get_weights(), model2.get_weights()):
        np.testing.assert_array_equal(a, b)  # restored best == checkpointed best
    got = model2.evaluate(x[48:], y[48:], verbose=0, return_dict=True)["loss"]
    assert got == pytest.approx(best, rel=1e-4)


def test_fit_rejects_bad_input():
    x, y = toy_data(16)
    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match="16"):
        model.fit(x, y[:10], verbose=0)
    with pytest.raises(ValueError, match=r"labels|range|\[0, 3\)"):
        model.fit(x, y + 5, verbose=0)
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.zeros((2, 9, 9, 1), np.float32), verbose=0)
    with pytest.raises(ValueError, match="nope"):
        model.compile("adam", "nope")
    with pytest.raises(ValueError, match="nadamx"):
        model.compile("nadamx", "mse")
