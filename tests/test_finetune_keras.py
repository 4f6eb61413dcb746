"""The Keras fine-tuning workflow, written as a Keras user writes it: train a small CNN on the
embedded digits data (digits 0-4), save it, load it back, freeze its convolutional base, put a
new head on it for digits 5-9, recompile and retrain.

Checks: the loaded model predicts exactly as the saved one; frozen weights do not move (bit
for bit) while the new head learns; accuracy on held-out digits clears stated thresholds
(measured with these seeds on the cpu backend: 0.965 on 0-4 after phase 1; on 5-9, 0.18 with
the untrained head and 0.877 after fine-tuning only the head; the thresholds leave margin
for other thread counts and BLAS builds)."""
import numpy as np

import fastconv as keras
from fastconv import layers


def _digits(lo, hi):
    (x, y), (xt, yt) = keras.datasets.digits.load_data()
    keep, keep_t = (y >= lo) & (y <= hi), (yt >= lo) & (yt <= hi)
    prep = lambda a: (a.astype("float32") / 255.0)[..., None]  # noqa: E731
    return (prep(x[keep]), (y[keep] - lo).astype("int64")), (prep(xt[keep_t]), (yt[keep_t] - lo).astype("int64"))


def test_save_load_freeze_and_fine_tune(tmp_path):
    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = _digits(0, 4)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(2, name="pool"),
        layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        layers.GlobalAveragePooling2D(name="gap"),
        layers.Dense(5, activation="softmax", name="head"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=12, verbose=0)
    base_acc = model.evaluate(xt, yt, verbose=0)[1]
    assert base_acc > 0.9, base_acc

    path = str(tmp_path / "digits_0_4.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    # Bit for bit, at the machine's thread count and at one thread: each inference plan fixes
    # its thread count when it is built (engine/inference.py, _TEAM_MIN_WORK), so the two
    # models' plans sum in the same order.
    np.testing.assert_array_equal(loaded.predict(xt, verbose=0), model.predict(xt, verbose=0))
    threads = keras.get_num_threads()
    keras.set_num_threads(1)
    try:
        np.testing.assert_array_equal(loaded.predict(xt, verbose=0), model.predict(xt, verbose=0))
    finally:
        keras.set_num_threads(threads)

    # Freeze the convolutional base; a new head for the new classes.
    base = loaded.layers[:-1]
    for layer in base:
        layer.trainable = False
    tuned = keras.Sequential([keras.Input((8, 8, 1)), *base, layers.Dense(5, activation="softmax", name="new_head")])
    assert tuned.count_params() - sum(l.count_params() for l in base) == 32 * 5 + 5
    assert len(tuned.trainable_weights) == 2  # the new head's kernel and bias only
    frozen = [w.copy() for l in base for w in l.get_weights()]

    (x2, y2), (xt2, yt2) = _digits(5, 9)
    tuned.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    before = tuned.evaluate(xt2, yt2, verbose=0)[1]
    head_before = tuned.get_layer("new_head").get_weights()[0].copy()
    tuned.fit(x2, y2, batch_size=32, epochs=30, verbose=0)
    after = tuned.evaluate(xt2, yt2, verbose=0)[1]

    for want, got in zip(frozen, [w for l in base for w in l.get_weights()], strict=True):
        np.testing.assert_array_equal(got, want)  # frozen: not moved at all
    assert not np.array_equal(tuned.get_layer("new_head").get_weights()[0], head_before)
    assert after > 0.8 and after > before + 0.3, (before, after)
