"""DenseNets (Huang et al. 2017): BN-ReLU-conv bottleneck layers, growth rate 32, transitions
with compression 0.5, as Keras applications builds them."""
from ... import layers
from ...autograd import ops
from ...engine.fusion import run_layers
from ...layers import Layer
from ._common import build, classifier_head, model_input

_EPS = 1.001e-5  # Keras applications' DenseNet epsilon


class DenseBlock(Layer):
    """`num_layers` dense layers; each sees the concatenation of all earlier outputs and adds
    `growth_rate` channels. bottleneck=True: BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k) (DenseNet-B);
    False: BN-ReLU-conv3x3(k) (the d2l variant)."""

    def __init__(self, num_layers, growth_rate=32, bottleneck=True, epsilon=_EPS, **kwargs):
        super().__init__(**kwargs)
        self.units = []
        for i in range(1, num_layers + 1):
            n = f"{self.name}_block{i}"  # Keras applications' names: conv2_block1_0_bn, ..._1_conv, ..._2_conv
            unit = []
            if bottleneck:
                unit += [layers.BatchNormalization(epsilon=epsilon, name=f"{n}_0_bn"), layers.ReLU(name=f"{n}_0_relu"),
                         layers.Conv2D(4 * growth_rate, 1, use_bias=False, name=f"{n}_1_conv")]
            k = 1 if bottleneck else 0
            unit += [layers.BatchNormalization(epsilon=epsilon, name=f"{n}_{k}_bn"), layers.ReLU(name=f"{n}_{k}_relu"),
                     layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{n}_2_conv")]
            self.units.append(unit)

    def call(self, x, training=None):
        for unit in self.units:
            x = ops.concatenate([x, run_layers(unit, x, training)], axis=-1)
        return x


class TransitionBlock(Layer):
    """BN-ReLU-conv1x1 keeping `compression` of the channels, then 2x2 average pooling."""

    def __init__(self, compression=0.5, epsilon=_EPS, **kwargs):
        super().__init__(**kwargs)
        self.compression = compression
        self.bn = layers.BatchNormalization(epsilon=epsilon, name=f"{self.name}_bn")  # Keras: pool2_bn, ...
        self.relu = layers.ReLU(name=f"{self.name}_relu")
        self.pool = layers.AveragePooling2D(2, 2, name=f"{self.name}_pool")
        self.conv = None

    def _keras_layer_order(self):
        return [self.bn, self.relu, self.conv, self.pool]

    def build(self, input_shape):
        self.conv = layers.Conv2D(int(input_shape[-1] * self.compression), 1, use_bias=False, name=f"{self.name}_conv")

    def call(self, x, training=None):
        return self.pool(run_layers([self.bn, self.relu, self.conv], x, training))


def densenet(blocks, input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, growth_rate=32,
             stem_filters=64, bottleneck=True, small_stem=False, name="densenet", classifier_activation="softmax",
             input_tensor=None):
    """A DenseNet from the number of layers per dense block, with Keras applications' layer names."""
    inputs = model_input(input_shape, input_tensor)
    if small_stem:
        x = layers.Conv2D(stem_filters, 3, padding="same", use_bias=False, name="conv1_conv")(inputs)
    else:
        x = layers.ZeroPadding2D(3)(inputs)
        x = layers.Conv2D(stem_filters, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=_EPS, name="conv1_bn")(x)
    x = layers.ReLU(name="conv1_relu")(x)
    if not small_stem:
        x = layers.ZeroPadding2D(1)(x)
        x = layers.MaxPooling2D(3, 2, name="pool1")(x)
    for i, n in enumerate(blocks):
        x = DenseBlock(n, growth_rate, bottleneck, name=f"conv{i + 2}")(x)
        if i < len(blocks) - 1:
            x = TransitionBlock(0.5, name=f"pool{i + 2}")(x)
    x = layers.BatchNormalization(epsilon=_EPS, name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    return build(inputs, classifier_head(x, classes, include_top, pooling, classifier_activation), name)


def densenet121(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, name="densenet121",
                classifier_activation="softmax", input_tensor=None):
    """DenseNet-121: 8,062,504 parameters at 224x224x3/1000 (Keras applications.DenseNet121)."""
    return densenet((6, 12, 24, 16), input_shape, classes, include_top, pooling, name=name,
                    classifier_activation=classifier_activation, input_tensor=input_tensor)


def densenet169(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, name="densenet169",
                classifier_activation="softmax", input_tensor=None):
    """DenseNet-169: 14,307,880 parameters (Keras applications.DenseNet169)."""
    return densenet((6, 12, 32, 32), input_shape, classes, include_top, pooling, name=name,
                    classifier_activation=classifier_activation, input_tensor=input_tensor)


def densenet201(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, name="densenet201",
                classifier_activation="softmax", input_tensor=None):
    """DenseNet-201: 20,242,984 parameters (Keras applications.DenseNet201)."""
    return densenet((6, 12, 48, 32), input_shape, classes, include_top, pooling, name=name,
                    classifier_activation=classifier_activation, input_tensor=input_tensor)


def small_densenet(input_shape=(96, 96, 1), classes=10, blocks=(4, 4, 4, 4), growth_rate=32, name="small_densenet"):
    """A small DenseNet for 28-96 px inputs (d2l §8.7): four blocks of plain BN-ReLU-conv3x3
    layers (growth 32) with transitions halving channels and size. Inputs of 64 px or more get
    d2l's stem (7x7/2 convolution, 3x3/2 max-pool: 96 px -> 24 px); smaller ones a 3x3
    convolution without pooling, so 28 px images survive three transitions. 761,370 parameters
    (one input channel, 10 classes) with the small stem, 763,930 with d2l's (checked by hand in
    the tests)."""
    small = min(input_shape[0], input_shape[1]) < 64
    return densenet(blocks, input_shape, classes, True, None, growth_rate, 64, bottleneck=False,
                    small_stem=small, name=name)
