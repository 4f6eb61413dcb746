"""Writes the Keras HDF5 fixture that tests/test_keras_h5.py reads (run with TensorFlow/Keras 3):

    python tests/golden/keras_h5/make_fixture.py

A small CNN (convolution, batch normalization, depthwise convolution, dense) built in Keras with
random weights and random BatchNormalization statistics, saved in both Keras HDF5 layouts
(legacy `small_cnn_legacy.h5` and Keras 3 `small_cnn.weights.h5`), and `expected.npz`: fixed
inputs and the Keras model's predictions on them (float32). The architecture is repeated in
fastconv by tests/keras_fixture.py with the same layer names.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPE, CLASSES = (24, 24, 3), 4


def build():
    L = keras.layers
    inputs = keras.Input(SHAPE)
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="block1_dw")(x)
    x = L.BatchNormalization(name="block1_dw_bn")(x)
    x = L.ReLU(6.0, name="block1_dw_relu")(x)
    x = L.Conv2D(32, 1, name="block1_pw")(x)
    x = L.BatchNormalization(name="block1_pw_bn")(x)
    x = L.ReLU(name="block1_pw_relu")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="block2_conv")(x)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = L.Dense(CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def main():
    keras.utils.set_random_seed(17)
    model = build()
    rng = np.random.default_rng(17)
    for layer in model.layers:  # random BN statistics, so that loading them is checked too
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, _, _ = layer.get_weights()
            c = g.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.3, c),
                               rng.uniform(0.5, 2.0, c)])
    x = rng.random((6,) + SHAPE, dtype=np.float32)
    y = model.predict(x, verbose=0)
    model.save_weights(os.path.join(HERE, "small_cnn.weights.h5"))
    with h5py.File(os.path.join(HERE, "small_cnn_legacy.h5"), "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    np.savez(os.path.join(HERE, "expected.npz"), x=x, y=y.astype(np.float32))
    print("wrote fixture; keras", keras.__version__)


if __name__ == "__main__":
    main()
