"""The fastconv twin of tests/golden/keras_h5/make_fixture.py's Keras model (same layer names),
for the HDF5 loader tests and the fine-tuning test."""
import os

import fastconv as fc
from fastconv import layers

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "keras_h5")
LEGACY = os.path.join(FIXTURE, "small_cnn_legacy.h5")
KERAS3 = os.path.join(FIXTURE, "small_cnn.weights.h5")
EXPECTED = os.path.join(FIXTURE, "expected.npz")
SHAPE, CLASSES = (24, 24, 3), 4


def base_layers(x):
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="block1_dw")(x)
    x = layers.BatchNormalization(name="block1_dw_bn")(x)
    x = layers.ReLU(6.0, name="block1_dw_relu")(x)
    x = layers.Conv2D(32, 1, name="block1_pw")(x)
    x = layers.BatchNormalization(name="block1_pw_bn")(x)
    x = layers.ReLU(name="block1_pw_relu")(x)
    return layers.Conv2D(32, 3, padding="same", activation="relu", name="block2_conv")(x)


def small_cnn(include_top=True, input_shape=SHAPE, classes=CLASSES):
    inputs = layers.Input(input_shape)
    x = base_layers(inputs)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return fc.Model(inputs, x, name="small_cnn")
