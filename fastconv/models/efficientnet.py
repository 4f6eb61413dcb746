"""EfficientNet B0-B7 (Tan & Le 2019) as Keras 3 applications builds them: the same layers,
names, order and weight shapes, so Keras weight files load by name. EfficientNetB0 has
5,330,571 parameters at 224x224x3 with 1000 classes (the input's Rescaling and Normalization
statistics and BatchNormalization's moving statistics included); inputs of 32x32 and up.

The network takes pixels in [0, 255]: Rescaling(1/255) and a Normalization layer (its mean and
variance are weights, set by the weight file) come first. Then a stride-2 stem and 16 (B0)
mobile inverted bottlenecks: 1x1 expansion, depthwise convolution (stride 2 after Keras's
asymmetric ZeroPadding2D, correct_pad), squeeze-and-excitation (global average -> 1x1 swish ->
1x1 sigmoid -> multiply), 1x1 projection, and where shapes allow a residual add after
stochastic depth (Dropout of whole samples, rate growing linearly to 0.2 with the block
index). B1-B7 scale width, depth and input size by the paper's coefficients.
"""
import math

from .. import initializers, layers
from ._keras_app import (KerasNames, check_arguments, classifier, finish, input_shape_for, model_input,
                         source_inputs)

# (kernel, repeats, filters_in, filters_out, expand_ratio, strides) of B0's seven stages; every
# block has squeeze-and-excitation with ratio 0.25 and an identity skip where shapes allow.
B0_STAGES = ((3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2),
             (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2), (3, 1, 192, 320, 6, 1))
SE_RATIO = 0.25

# name: (width coefficient, depth coefficient, default input size, dropout before the classifier)
VARIANTS = {
    "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5),
}


def _conv_init():
    # Keras's choice for EfficientNet's convolutions (He-style, fan_out), fresh per layer.
    return initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="truncated_normal")


def _dense_init():
    return initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_out", distribution="uniform")


def round_filters(filters, width, divisor=8):
    """Scale `filters` by `width`, rounded to a multiple of `divisor`, never more than 10% down."""
    filters *= width
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * filters:
        rounded += divisor
    return int(rounded)


def correct_pad(shape, kernel):
    """Keras's padding before a stride-2 'valid' convolution: TensorFlow's 'same' split
    (one cell less on top/left for even sizes), assumed even when the size is unknown."""
    adjust = [1 if s is None else 1 - s % 2 for s in shape[1:3]]
    half = kernel // 2
    return ((half - adjust[0], half), (half - adjust[1], half))


def _block(x, prefix, drop_rate, kernel, filters_in, filters_out, expand_ratio, strides, activation="swish"):
    inputs = x
    filters = filters_in * expand_ratio
    if expand_ratio != 1:
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False, kernel_initializer=_conv_init(),
                          name=f"{prefix}expand_conv")(x)
        x = layers.BatchNormalization(axis=3, name=f"{prefix}expand_bn")(x)
        x = layers.Activation(activation, name=f"{prefix}expand_activation")(x)
    padding = "same"
    if strides == 2:
        x = layers.ZeroPadding2D(correct_pad(x.shape, kernel), name=f"{prefix}dwconv_pad")(x)
        padding = "valid"
    x = layers.DepthwiseConv2D(kernel, strides=strides, padding=padding, use_bias=False,
                               depthwise_initializer=_conv_init(), name=f"{prefix}dwconv")(x)
    x = layers.BatchNormalization(axis=3, name=f"{prefix}bn")(x)
    x = layers.Activation(activation, name=f"{prefix}activation")(x)

    squeezed = max(1, int(filters_in * SE_RATIO))
    se = layers.GlobalAveragePooling2D(name=f"{prefix}se_squeeze")(x)
    se = layers.Reshape((1, 1, filters), name=f"{prefix}se_reshape")(se)
    se = layers.Conv2D(squeezed, 1, padding="same", activation=activation, kernel_initializer=_conv_init(),
                       name=f"{prefix}se_reduce")(se)
    se = layers.Conv2D(filters, 1, padding="same", activation="sigmoid", kernel_initializer=_conv_init(),
                       name=f"{prefix}se_expand")(se)
    x = layers.multiply([x, se], name=f"{prefix}se_excite")

    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, kernel_initializer=_conv_init(),
                      name=f"{prefix}project_conv")(x)
    x = layers.BatchNormalization(axis=3, name=f"{prefix}project_bn")(x)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:  # stochastic depth: drop the whole residual branch of a sample
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}drop")(x)
        x = layers.add([x, inputs], name=f"{prefix}add")
    return x


def efficientnet(variant="b0", include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, drop_connect_rate=0.2):
    """keras.applications.EfficientNet<variant>'s architecture (weights=None only: untrained)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    width, depth, default_size, dropout_rate = VARIANTS[variant]
    check_arguments(weights, include_top, pooling, classes, classifier_activation)
    shape = input_shape_for(input_shape, default_size, 32, include_top, input_tensor)
    names = KerasNames()
    img = model_input(input_tensor, shape, names)

    x = layers.Rescaling(1.0 / 255.0, name=names("rescaling"))(img)
    x = layers.Normalization(axis=3, name=names("normalization"))(x)
    x = layers.ZeroPadding2D(correct_pad(x.shape, 3), name="stem_conv_pad")(x)
    x = layers.Conv2D(round_filters(32, width), 3, strides=2, padding="valid", use_bias=False,
                      kernel_initializer=_conv_init(), name="stem_conv")(x)
    x = layers.BatchNormalization(axis=3, name="stem_bn")(x)
    x = layers.Activation("swish", name="stem_activation")(x)

    repeats = [int(math.ceil(depth * stage[1])) for stage in B0_STAGES]
    total, b = float(sum(repeats)), 0
    for i, ((kernel, _, f_in, f_out, expand, strides), n) in enumerate(zip(B0_STAGES, repeats)):
        f_in, f_out = round_filters(f_in, width), round_filters(f_out, width)
        for j in range(n):
            x = _block(x, f"block{i + 1}{chr(ord('a') + j)}_", drop_connect_rate * b / total, kernel,
                       f_in if j == 0 else f_out, f_out, expand, strides if j == 0 else 1)
            b += 1

    x = layers.Conv2D(round_filters(1280, width), 1, padding="same", use_bias=False,
                      kernel_initializer=_conv_init(), name="top_conv")(x)
    x = layers.BatchNormalization(axis=3, name="top_bn")(x)
    x = layers.Activation("swish", name="top_activation")(x)

    x = classifier(x, include_top, pooling, classes, classifier_activation, names, ("avg_pool", "max_pool"),
                   dropout_rate, _dense_init())
    inputs = img if input_tensor is None else source_inputs(input_tensor)
    return finish(inputs, x, name or f"efficientnet{variant}", names)


def _variant_builder(variant):
    def build(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
              classifier_activation="softmax", name=f"efficientnet{variant}"):
        return efficientnet(variant, include_top, weights, input_tensor, input_shape, pooling, classes,
                            classifier_activation, name)
    build.__name__ = build.__qualname__ = f"efficientnet_{variant}"
    build.__doc__ = (f"keras.applications.EfficientNet{variant.upper()}'s architecture (weights=None only), "
                     f"default input {VARIANTS[variant][2]}x{VARIANTS[variant][2]}x3.")
    return build


efficientnet_b0 = EfficientNetB0 = _variant_builder("b0")
efficientnet_b1 = EfficientNetB1 = _variant_builder("b1")
efficientnet_b2 = EfficientNetB2 = _variant_builder("b2")
efficientnet_b3 = EfficientNetB3 = _variant_builder("b3")
efficientnet_b4 = EfficientNetB4 = _variant_builder("b4")
efficientnet_b5 = EfficientNetB5 = _variant_builder("b5")
efficientnet_b6 = EfficientNetB6 = _variant_builder("b6")
efficientnet_b7 = EfficientNetB7 = _variant_builder("b7")
