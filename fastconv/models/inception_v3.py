"""InceptionV3 (Szegedy et al. 2016, "Rethinking the Inception Architecture") as Keras 3
applications builds it: the same layers, names, order and weight shapes, so Keras weight files
load by name. 23,851,784 parameters at 299x299x3 with 1000 classes; inputs of 75x75 and up.

Every convolution is conv (no bias) -> BatchNormalization(scale=False) -> ReLU; the network
is a stem, three 35x35 blocks (mixed0-2), a reduction (mixed3), four 17x17 blocks with
factorised 7x7 convolutions (mixed4-7), a reduction (mixed8) and two 8x8 blocks with split
1x3/3x1 branches (mixed9, mixed10). Expects inputs scaled to [-1, 1].
"""
from .. import layers
from ._keras_app import (KerasNames, check_arguments, classifier, finish, input_shape_for, model_input,
                         source_inputs)


def _conv_bn(x, names, filters, rows, cols, padding="same", strides=(1, 1)):
    x = layers.Conv2D(filters, (rows, cols), strides=strides, padding=padding, use_bias=False,
                      name=names("conv2d"))(x)
    x = layers.BatchNormalization(axis=3, scale=False, name=names("batch_normalization"))(x)
    return layers.Activation("relu", name=names("activation"))(x)


def _avg_pool_branch(x, names, filters):
    pool = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same", name=names("average_pooling2d"))(x)
    return _conv_bn(pool, names, filters, 1, 1)


def _block_35(x, names, pool_filters, name):
    """mixed0-2: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""
    b1 = _conv_bn(x, names, 64, 1, 1)
    b5 = _conv_bn(_conv_bn(x, names, 48, 1, 1), names, 64, 5, 5)
    b3 = _conv_bn(_conv_bn(_conv_bn(x, names, 64, 1, 1), names, 96, 3, 3), names, 96, 3, 3)
    bp = _avg_pool_branch(x, names, pool_filters)
    return layers.concatenate([b1, b5, b3, bp], axis=3, name=name)


def _block_17(x, names, mid, name):
    """mixed4-7: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1 (`mid` inner filters)."""
    b1 = _conv_bn(x, names, 192, 1, 1)
    b7 = _conv_bn(x, names, mid, 1, 1)
    b7 = _conv_bn(b7, names, mid, 1, 7)
    b7 = _conv_bn(b7, names, 192, 7, 1)
    bd = _conv_bn(x, names, mid, 1, 1)
    for filters, rows, cols in ((mid, 7, 1), (mid, 1, 7), (mid, 7, 1), (192, 1, 7)):
        bd = _conv_bn(bd, names, filters, rows, cols)
    bp = _avg_pool_branch(x, names, 192)
    return layers.concatenate([b1, b7, bd, bp], axis=3, name=name)


def _block_8(x, names, i):
    """mixed9, mixed10: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | avgpool-1x1."""
    b1 = _conv_bn(x, names, 320, 1, 1)
    b3 = _conv_bn(x, names, 384, 1, 1)
    b3 = layers.concatenate([_conv_bn(b3, names, 384, 1, 3), _conv_bn(b3, names, 384, 3, 1)], axis=3,
                            name=f"mixed9_{i}")
    bd = _conv_bn(_conv_bn(x, names, 448, 1, 1), names, 384, 3, 3)
    bd = layers.concatenate([_conv_bn(bd, names, 384, 1, 3), _conv_bn(bd, names, 384, 3, 1)], axis=3,
                            name=names("concatenate"))
    bp = _avg_pool_branch(x, names, 192)
    return layers.concatenate([b1, b3, bd, bp], axis=3, name=f"mixed{9 + i}")


def inception_v3(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name="inception_v3"):
    """keras.applications.InceptionV3's architecture (weights=None only: untrained)."""
    check_arguments(weights, include_top, pooling, classes, classifier_activation)
    shape = input_shape_for(input_shape, 299, 75, include_top, input_tensor)
    names = KerasNames()
    img = model_input(input_tensor, shape, names)

    x = _conv_bn(img, names, 32, 3, 3, strides=(2, 2), padding="valid")
    x = _conv_bn(x, names, 32, 3, 3, padding="valid")
    x = _conv_bn(x, names, 64, 3, 3)
    x = layers.MaxPooling2D((3, 3), strides=(2, 2), name=names("max_pooling2d"))(x)
    x = _conv_bn(x, names, 80, 1, 1, padding="valid")
    x = _conv_bn(x, names, 192, 3, 3, padding="valid")
    x = layers.MaxPooling2D((3, 3), strides=(2, 2), name=names("max_pooling2d"))(x)

    for i, pool_filters in enumerate((32, 64, 64)):
        x = _block_35(x, names, pool_filters, f"mixed{i}")

    b3 = _conv_bn(x, names, 384, 3, 3, strides=(2, 2), padding="valid")
    bd = _conv_bn(_conv_bn(x, names, 64, 1, 1), names, 96, 3, 3)
    bd = _conv_bn(bd, names, 96, 3, 3, strides=(2, 2), padding="valid")
    bp = layers.MaxPooling2D((3, 3), strides=(2, 2), name=names("max_pooling2d"))(x)
    x = layers.concatenate([b3, bd, bp], axis=3, name="mixed3")

    for i, mid in enumerate((128, 160, 160, 192)):
        x = _block_17(x, names, mid, f"mixed{4 + i}")

    b3 = _conv_bn(_conv_bn(x, names, 192, 1, 1), names, 320, 3, 3, strides=(2, 2), padding="valid")
    b7 = _conv_bn(x, names, 192, 1, 1)
    b7 = _conv_bn(b7, names, 192, 1, 7)
    b7 = _conv_bn(b7, names, 192, 7, 1)
    b7 = _conv_bn(b7, names, 192, 3, 3, strides=(2, 2), padding="valid")
    bp = layers.MaxPooling2D((3, 3), strides=(2, 2), name=names("max_pooling2d"))(x)
    x = layers.concatenate([b3, b7, bp], axis=3, name="mixed8")

    for i in range(2):
        x = _block_8(x, names, i)

    x = classifier(x, include_top, pooling, classes, classifier_activation, names)
    inputs = img if input_tensor is None else source_inputs(input_tensor)
    return finish(inputs, x, name, names)


InceptionV3 = inception_v3
