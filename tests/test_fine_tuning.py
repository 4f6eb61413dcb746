"""Fine-tuning the Keras way, end to end, on a small generated image folder: a base with the
committed Keras fixture's weights (tests/golden/keras_h5, loaded by name without its top),
`base.trainable = False` (BatchNormalization then runs in inference mode, as Keras 3), a new
head trained with `fit` on `image_dataset_from_directory`; then the last block unfrozen and
the model recompiled with a lower learning rate. Checks: frozen weights (BN statistics
included) do not move, trained ones do, and validation accuracy rises well above chance."""
import numpy as np
import pytest

pytest.importorskip("h5py")
Image = pytest.importorskip("PIL.Image")

import fastconv as keras  # noqa: E402
from keras_fixture import LEGACY, SHAPE, small_cnn  # noqa: E402

COLOURS = [(200, 40, 40), (40, 180, 60), (50, 70, 210)]  # one class per dominant colour


def _image_folder(root, per_class=16, seed=0):
    rng = np.random.default_rng(seed)
    for c, colour in enumerate(COLOURS):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):
            noise = rng.normal(0, 40, SHAPE[:2] + (3,))
            img = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"class_{c}" / f"{i}.png")
    return root


def _values(layers_):
    return [np.array(w.numpy()) for layer in layers_ for w in layer.weights]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_fine_tune_the_keras_way(tmp_path):
    keras.utils.set_random_seed(0)
    folder = _image_folder(tmp_path / "images")
    train, val = keras.utils.image_dataset_from_directory(
        folder, image_size=SHAPE[:2], batch_size=8, validation_split=0.25, subset="both", seed=1)

    base = small_cnn(include_top=False)
    base.load_weights(LEGACY, by_name=True)  # the fixture's file has a top the base lacks
    base.trainable = False
    inputs = keras.Input(SHAPE)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    # The fixture's base has random weights: its features separate the colours well but are
    # small (~0.02); a BN in the new head rescales them so that a few epochs suffice.
    x = keras.layers.BatchNormalization(momentum=0.8)(x)
    outputs = keras.layers.Dense(len(COLOURS), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    assert len(model.trainable_weights) == 4  # the head only: BN gamma/beta, Dense kernel/bias

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    frozen = _values(base.layers)
    _, acc_before = model.evaluate(val, verbose=0)
    model.fit(train, epochs=8, verbose=0)
    _, acc_frozen = model.evaluate(val, verbose=0)
    assert _same(frozen, _values(base.layers))  # kernels and BN moving statistics unchanged
    assert acc_frozen >= 0.9 and acc_frozen > acc_before, (acc_before, acc_frozen)

    # Unfreeze the last block (block2_conv), keep the rest frozen, recompile with a lower rate.
    base.trainable = True
    for layer in base.layers[:-1]:
        layer.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    still_frozen, last = _values(base.layers[:-1]), _values(base.layers[-1:])
    model.fit(train, epochs=2, verbose=0)
    _, acc_tuned = model.evaluate(val, verbose=0)
    assert _same(still_frozen, _values(base.layers[:-1]))
    assert not _same(last, _values(base.layers[-1:]))
    assert acc_tuned >= 0.9, acc_tuned
