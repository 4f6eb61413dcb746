"""Regenerate model_file_v1.keras and model_file_v1.npz beside this file:

    PYTHONPATH=. python tests/golden/make_model_file.py

The .keras file is a small functional model (conv, batch norm, a residual add, dropout,
dense) compiled with Adam and trained for two steps, so it holds optimizer slots and a step
counter. The .npz holds an input batch, its labels, the predictions of the saved model and
the weights after one more training step, both computed on fastconv's NumPy reference
backend (not the cpu kernels the test then runs on). tests/test_model_file.py loads the file
as it is committed: a change that stops fastconv from reading the files it wrote before fails
there. Regenerate only on a deliberate format change (and bump FORMAT_VERSION).
"""
import os

import numpy as np

import fastconv as fc
from fastconv import layers, models, optimizers
from fastconv.saving import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    inputs = layers.Input((6, 6, 2), name="image")
    x = layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")(inputs)  # BN follows: a bias gets
    # only rounding noise as gradient, which Adam would turn into full steps that differ by backend
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Add(name="residual")([x, layers.Conv2D(3, 1, name="shortcut")(inputs)])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.25, name="dropout")(x)
    outputs = layers.Dense(4, activation="softmax", name="probs")(x)
    model = models.Model(inputs, outputs, name="golden_v1")
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    return model


def main():
    rng = np.random.default_rng(16)
    x = rng.standard_normal((5, 6, 6, 2)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 1])
    with fc.backend("numpy"):
        fc.set_seed(0)
        model = build()
        for seed in (1, 2):
            fc.set_seed(seed)
            model.train_on_batch(x, y)
        model.save(os.path.join(HERE, "model_file_v1.keras"))
        predictions = model.predict(x, verbose=0)
        fc.set_seed(3)
        model.train_on_batch(x, y)
        after = {f"after/{i}": w for i, w in enumerate(model.get_weights())}
    with atomic_write(os.path.join(HERE, "model_file_v1.npz")) as f:
        np.savez(f, x=x, y=y, predictions=predictions, **after)


if __name__ == "__main__":
    main()
