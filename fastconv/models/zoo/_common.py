"""Helpers shared by the zoo constructors."""
from ... import layers
from ...engine import Model


def classifier_head(x, classes, include_top, pooling, activation="softmax", name="predictions"):
    """Keras applications' tail: GAP + Dense when include_top, else optional pooling."""
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return layers.Dense(classes, activation=activation, name=name)(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    if pooling is not None:
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    return x


def model_input(input_shape, input_tensor=None):
    """The model's input: a new Input of input_shape, or the given Keras tensor (Keras's input_tensor)."""
    return layers.Input(input_shape) if input_tensor is None else input_tensor


def build(inputs, outputs, name):
    return Model(inputs, outputs, name=name)


def conv_bn_relu(x, filters, kernel, strides=1, padding="same", use_bias=False, epsilon=1e-3, relu=True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=use_bias)(x)
    x = layers.BatchNormalization(epsilon=epsilon)(x)
    return layers.ReLU()(x) if relu else x
