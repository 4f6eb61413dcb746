"""ResNets (He et al. 2015): basic and bottleneck residual blocks, ImageNet and CIFAR stems."""
from ... import layers
from ...autograd import ops
from ...engine.fusion import run_layers
from ...layers import Layer
from ._common import build, classifier_head, model_input


class ResidualBlock(Layer):
    """Basic block: conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU.

    The shortcut is the identity, or a 1x1 convolution + BN (projection) when the stride or the
    channel count changes. Convolutions carry no bias by default (BN follows; torchvision).
    """

    expansion = 1

    def __init__(self, filters, strides=1, use_bias=False, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides, self.use_bias, self.epsilon = filters, strides, use_bias, epsilon
        self.path = self.make_path()
        self.proj = None

    def conv_bn(self, filters, kernel, strides=1, index=1):
        # Keras applications' names (conv2_block1_1_conv, ..._0_conv for the projection), so
        # that Keras weight files load by name.
        return [layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=self.use_bias,
                              name=f"{self.name}_{index}_conv"),
                layers.BatchNormalization(epsilon=self.epsilon, name=f"{self.name}_{index}_bn")]

    def relu(self, index):
        return layers.ReLU(name=f"{self.name}_{index}_relu")

    def make_path(self):
        return [*self.conv_bn(self.filters, 3, self.strides, 1), self.relu(1), *self.conv_bn(self.filters, 3, 1, 2)]

    def build(self, input_shape):
        if self.strides != 1 or input_shape[-1] != self.filters * self.expansion:
            self.proj = self.conv_bn(self.filters * self.expansion, 1, self.strides, index=0)

    def _keras_layer_order(self):
        """Sublayers in the order of Keras's flat model.layers (the projection's convolution
        and BN sit between the last convolution's and the last BN's): Keras 3 weight files
        number layers per class in that order."""
        if not self.proj:
            return list(self.path)
        *head, conv, bn = self.path
        return [*head, self.proj[0], conv, self.proj[1], bn]

    def call(self, x, training=None):
        y = run_layers(self.path, x, training)
        shortcut = run_layers(self.proj, x, training) if self.proj else x
        return ops.add_activation(y, shortcut, "relu")

    def _inference_graph(self, graph, x):
        """call() described to an inference plan (engine/inference.py): slots, not arrays."""
        y = graph.layers(self.path, x)
        shortcut = graph.layers(self.proj, x) if self.proj else x
        return graph.add_activation(y, shortcut, "relu")


class BottleneckBlock(ResidualBlock):
    """Bottleneck block: 1x1 (stride) → 3x3 → 1x1 with 4x expansion, as Keras applications
    build it (stride on the first 1x1, convolutions with bias, BN epsilon 1.001e-5)."""

    expansion = 4

    def __init__(self, filters, strides=1, use_bias=True, epsilon=1.001e-5, **kwargs):
        super().__init__(filters, strides, use_bias=use_bias, epsilon=epsilon, **kwargs)

    def make_path(self):
        f = self.filters
        return [*self.conv_bn(f, 1, self.strides, 1), self.relu(1), *self.conv_bn(f, 3, 1, 2), self.relu(2),
                *self.conv_bn(4 * f, 1, 1, 3)]


def _stem(x, stem, filters, use_bias):
    eps = 1.001e-5 if use_bias else 1e-5
    if stem == "imagenet":  # Keras applications' layer names
        x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = layers.Conv2D(filters, 7, strides=2, use_bias=use_bias, name="conv1_conv")(x)
        x = layers.BatchNormalization(epsilon=eps, name="conv1_bn")(x)
        x = layers.ReLU(name="conv1_relu")(x)
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        return layers.MaxPooling2D(3, 2, name="pool1_pool")(x)
    if stem == "cifar":
        x = layers.Conv2D(filters, 3, padding="same", use_bias=use_bias, name="conv1_conv")(x)
        x = layers.BatchNormalization(epsilon=eps, name="conv1_bn")(x)
        return layers.ReLU(name="conv1_relu")(x)
    raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")


def resnet(block, blocks_per_stage, widths, input_shape, classes, include_top, pooling, stem, name,
           classifier_activation="softmax", input_tensor=None):
    """A ResNet from a block class, blocks per stage and stage widths (stride 2 from stage 2).
    Blocks are named as Keras applications names them (conv2_block1, ...)."""
    use_bias = block is BottleneckBlock
    inputs = model_input(input_shape, input_tensor)
    x = _stem(inputs, stem, widths[0] if stem == "cifar" and block is ResidualBlock else 64, use_bias)
    for stage, (n, width) in enumerate(zip(blocks_per_stage, widths)):
        for i in range(n):
            x = block(width, strides=2 if stage > 0 and i == 0 else 1, name=f"conv{stage + 2}_block{i + 1}")(x)
    return build(inputs, classifier_head(x, classes, include_top, pooling, classifier_activation), name)


def _imagenet_resnet(block, counts, doc_name):
    def constructor(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, stem="imagenet",
                    name=doc_name, classifier_activation="softmax", input_tensor=None):
        return resnet(block, counts, (64, 128, 256, 512), input_shape, classes, include_top, pooling, stem, name,
                      classifier_activation, input_tensor)
    constructor.__name__ = doc_name
    return constructor


resnet18 = _imagenet_resnet(ResidualBlock, (2, 2, 2, 2), "resnet18")
resnet18.__doc__ = """ResNet-18 (basic blocks). Trainable parameters at 224x224x3/1000: 11,689,512,
torchvision's resnet18 count; the total adds 9,600 BN moving statistics (Keras counts them).
stem="cifar" replaces the 7x7/2 convolution and max-pool with one 3x3 convolution."""
resnet34 = _imagenet_resnet(ResidualBlock, (3, 4, 6, 3), "resnet34")
resnet34.__doc__ = """ResNet-34 (basic blocks). Trainable parameters 21,797,672 (torchvision's
resnet34) plus 2x the BN channels as non-trainable moving statistics."""
resnet50 = _imagenet_resnet(BottleneckBlock, (3, 4, 6, 3), "resnet50")
resnet50.__doc__ = """ResNet-50 as Keras applications builds it: 25,636,712 parameters at 224x224x3/1000."""
resnet101 = _imagenet_resnet(BottleneckBlock, (3, 4, 23, 3), "resnet101")
resnet101.__doc__ = """ResNet-101 as Keras applications builds it: 44,707,176 parameters."""
resnet152 = _imagenet_resnet(BottleneckBlock, (3, 8, 36, 3), "resnet152")
resnet152.__doc__ = """ResNet-152 as Keras applications builds it: 60,419,944 parameters."""


def _cifar_resnet(n, doc_name):
    def constructor(input_shape=(32, 32, 3), classes=10, include_top=True, pooling=None, name=doc_name):
        return resnet(ResidualBlock, (n, n, n), (16, 32, 64), input_shape, classes, include_top, pooling,
                      "cifar", name)
    constructor.__name__ = doc_name
    constructor.__doc__ = (f"CIFAR ResNet-{6 * n + 2} (He et al. §4.2): a 3x3 16-filter stem and three "
                           f"stages of {n} basic blocks with 16/32/64 filters. Shortcuts are projections "
                           "(option B) where the shape changes, so the count is the paper's option-A count "
                           "plus two 1x1 convolutions with BN.")
    return constructor


resnet20 = _cifar_resnet(3, "resnet20")
resnet32 = _cifar_resnet(5, "resnet32")
resnet56 = _cifar_resnet(9, "resnet56")
