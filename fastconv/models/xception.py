"""Xception (Chollet 2017, "Deep Learning with Depthwise Separable Convolutions") as Keras 3
applications builds it: the same layers, names, order and weight shapes, so Keras weight files
load by name. 22,910,480 parameters at 299x299x3 with 1000 classes; inputs of 71x71 and up.

Entry flow: two plain convolutions, then three blocks of separable convolutions (no bias) whose
max-pooled output is added to a strided 1x1 projection; middle flow: eight residual blocks of
three ReLU -> SeparableConv2D -> BN at 728 channels; exit flow: one more projected block and two
separable convolutions to 2048 channels. Expects inputs scaled to [-1, 1].
"""
from .. import layers
from ._keras_app import (KerasNames, check_arguments, classifier, finish, input_shape_for, model_input,
                         source_inputs)


def _sep_bn(x, filters, prefix, relu_first=True):
    """[ReLU ->] SeparableConv2D 3x3 (no bias) -> BN, named prefix + _act / nothing / _bn."""
    if relu_first:
        x = layers.Activation("relu", name=f"{prefix}_act")(x)
    x = layers.SeparableConv2D(filters, (3, 3), padding="same", use_bias=False, name=prefix)(x)
    return layers.BatchNormalization(axis=-1, name=f"{prefix}_bn")(x)


def _projected_block(x, names, block, filters, first_relu=True):
    """Two separable convolutions and a 3x3/2 max-pool, plus a strided 1x1 projection of the input."""
    residual = layers.Conv2D(filters[1], (1, 1), strides=(2, 2), padding="same", use_bias=False,
                             name=names("conv2d"))(x)
    residual = layers.BatchNormalization(axis=-1, name=names("batch_normalization"))(residual)
    # block 2's input is already ReLU'd, so its first separable convolution has no ReLU before it
    x = _sep_bn(x, filters[0], f"block{block}_sepconv1", relu_first=first_relu)
    x = _sep_bn(x, filters[1], f"block{block}_sepconv2")
    x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same", name=f"block{block}_pool")(x)
    return layers.add([x, residual], name=names("add"))


def xception(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
             classes=1000, classifier_activation="softmax", name="xception"):
    """keras.applications.Xception's architecture (weights=None only: untrained)."""
    check_arguments(weights, include_top, pooling, classes, classifier_activation)
    shape = input_shape_for(input_shape, 299, 71, include_top, input_tensor)
    names = KerasNames()
    img = model_input(input_tensor, shape, names)

    x = layers.Conv2D(32, (3, 3), strides=(2, 2), use_bias=False, name="block1_conv1")(img)
    x = layers.BatchNormalization(axis=-1, name="block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)
    x = layers.Conv2D(64, (3, 3), use_bias=False, name="block1_conv2")(x)
    x = layers.BatchNormalization(axis=-1, name="block1_conv2_bn")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(x)

    x = _projected_block(x, names, 2, (128, 128), first_relu=False)
    x = _projected_block(x, names, 3, (256, 256))
    x = _projected_block(x, names, 4, (728, 728))

    for block in range(5, 13):
        residual = x
        for i in (1, 2, 3):
            x = _sep_bn(x, 728, f"block{block}_sepconv{i}")
        x = layers.add([x, residual], name=names("add"))

    x = _projected_block(x, names, 13, (728, 1024))

    x = layers.SeparableConv2D(1536, (3, 3), padding="same", use_bias=False, name="block14_sepconv1")(x)
    x = layers.BatchNormalization(axis=-1, name="block14_sepconv1_bn")(x)
    x = layers.Activation("relu", name="block14_sepconv1_act")(x)
    x = layers.SeparableConv2D(2048, (3, 3), padding="same", use_bias=False, name="block14_sepconv2")(x)
    x = layers.BatchNormalization(axis=-1, name="block14_sepconv2_bn")(x)
    x = layers.Activation("relu", name="block14_sepconv2_act")(x)

    x = classifier(x, include_top, pooling, classes, classifier_activation, names)
    inputs = img if input_tensor is None else source_inputs(input_tensor)
    return finish(inputs, x, name, names)


Xception = xception
