"""MobileNet v2 (Sandler et al. 2018): inverted residual blocks with linear bottlenecks, as Keras
applications builds it (and with its layer names)."""
from ... import layers
from ...autograd import ops
from ...engine.fusion import run_layers
from ...layers import Layer
from ._common import build, model_input

# (filters, stride, expansion) per block; block 0 has no expansion convolution.
_BLOCKS = [(16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6), (64, 1, 6),
           (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6),
           (320, 1, 6)]


def make_divisible(v, divisor=8):
    """Round channels to a multiple of divisor, never more than 10% down (the paper's rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _bn(name):
    return layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name=name)


class InvertedResidualBlock(Layer):
    """1x1 expansion - BN - ReLU6 - 3x3 depthwise (stride) - BN - ReLU6 - 1x1 projection - BN,
    plus the input when shapes allow. Strided blocks pad like Keras's correct_pad (by input
    size parity) and convolve 'valid'."""

    def __init__(self, filters, strides, expansion, block_id, **kwargs):
        super().__init__(**kwargs)
        p = f"block_{block_id}_" if block_id else "expanded_conv_"
        self.filters, self.strides, self.expansion, self.prefix = filters, strides, expansion, p
        self.expand = []
        self.pad = None
        self.depthwise = [layers.DepthwiseConv2D(3, strides=strides, use_bias=False,
                                                 padding="same" if strides == 1 else "valid", name=p + "depthwise"),
                          _bn(p + "depthwise_BN"), layers.ReLU(6.0, name=p + "depthwise_relu")]
        self.project = [layers.Conv2D(filters, 1, use_bias=False, name=p + "project"), _bn(p + "project_BN")]

    def build(self, input_shape):
        channels = input_shape[-1]
        if self.expansion != 1:
            p = self.prefix
            self.expand = [layers.Conv2D(self.expansion * channels, 1, use_bias=False, name=p + "expand"),
                           _bn(p + "expand_BN"), layers.ReLU(6.0, name=p + "expand_relu")]
        if self.strides == 2:
            # Keras's correct_pad: one row/column after for an even size, one on each side for odd.
            adjust = [1 - int(s) % 2 if s is not None else 1 for s in input_shape[1:3]]
            self.pad = layers.ZeroPadding2D(((1 - adjust[0], 1), (1 - adjust[1], 1)), name=self.prefix + "pad")
        self.residual = self.strides == 1 and channels == self.filters

    def call(self, x, training=None):
        y = run_layers(self.expand, x, training)
        if self.pad is not None:
            y = self.pad(y)
        y = run_layers(self.project, run_layers(self.depthwise, y, training), training)
        return ops.add(x, y) if self.residual else y


def mobilenet_v2(input_shape=(224, 224, 3), alpha=1.0, include_top=True, pooling=None, classes=1000,
                 name=None, classifier_activation="softmax", input_tensor=None):
    """MobileNet v2 as Keras applications builds it: 3,538,984 parameters at alpha=1.0, 224x224x3/1000."""
    inputs = model_input(input_shape, input_tensor)
    x = layers.Conv2D(make_divisible(32 * alpha), 3, strides=2, padding="same", use_bias=False, name="Conv1")(inputs)
    x = _bn("bn_Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    for block_id, (filters, strides, expansion) in enumerate(_BLOCKS):
        x = InvertedResidualBlock(make_divisible(int(filters * alpha)), strides, expansion, block_id,
                                  name=f"inverted_residual_{block_id}")(x)
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = layers.Conv2D(last, 1, use_bias=False, name="Conv_1")(x)
    x = _bn("Conv_1_bn")(x)
    x = layers.ReLU(6.0, name="out_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D()(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D()(x)
    return build(inputs, x, name or f"mobilenetv2_{alpha:.2f}_{input_shape[0]}")
