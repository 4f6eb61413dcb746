"""ResNet v2 (He et al. 2016, "Identity Mappings"): pre-activation bottleneck blocks, as Keras
applications builds ResNet50V2/101V2/152V2 (and with its layer names)."""
from ... import layers
from ...autograd import ops
from ...engine.fusion import run_layers
from ...layers import Layer
from ._common import build, classifier_head, model_input

_EPS = 1.001e-5


class PreactBottleneckBlock(Layer):
    """BN-ReLU (shared pre-activation) -> 1x1 -> 3x3 (stride) -> 1x1 with 4x expansion, plus the
    shortcut: a 1x1 convolution of the pre-activation (first block of a stage), a 1x1 max-pool of
    the input (strided block) or the input itself. Keras puts the stride on a stage's last block."""

    def __init__(self, filters, strides=1, conv_shortcut=False, **kwargs):
        super().__init__(**kwargs)
        n = self.name
        self.preact = [layers.BatchNormalization(epsilon=_EPS, name=f"{n}_preact_bn"),
                       layers.ReLU(name=f"{n}_preact_relu")]
        self.path = [
            layers.Conv2D(filters, 1, use_bias=False, name=f"{n}_1_conv"),
            layers.BatchNormalization(epsilon=_EPS, name=f"{n}_1_bn"), layers.ReLU(name=f"{n}_1_relu"),
            layers.ZeroPadding2D(1, name=f"{n}_2_pad"),
            layers.Conv2D(filters, 3, strides=strides, use_bias=False, name=f"{n}_2_conv"),
            layers.BatchNormalization(epsilon=_EPS, name=f"{n}_2_bn"), layers.ReLU(name=f"{n}_2_relu"),
            layers.Conv2D(4 * filters, 1, name=f"{n}_3_conv")]
        self.conv_shortcut = layers.Conv2D(4 * filters, 1, strides=strides, name=f"{n}_0_conv") if conv_shortcut else None
        self.pool_shortcut = layers.MaxPooling2D(1, strides) if strides > 1 and not conv_shortcut else None

    def _keras_layer_order(self):
        # Keras's flat model.layers lists the shortcut convolution just before the last one.
        extra = [self.conv_shortcut or self.pool_shortcut] if (self.conv_shortcut or self.pool_shortcut) else []
        return [*self.preact, *self.path[:-1], *extra, self.path[-1]]

    def call(self, x, training=None):
        pre = run_layers(self.preact, x, training)
        if self.conv_shortcut is not None:
            shortcut = self.conv_shortcut(pre)
        elif self.pool_shortcut is not None:
            shortcut = self.pool_shortcut(x)
        else:
            shortcut = x
        return ops.add(shortcut, run_layers(self.path, pre, training))


def resnet_v2(blocks_per_stage, input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None,
              name="resnet_v2", classifier_activation="softmax", input_tensor=None):
    inputs = model_input(input_shape, input_tensor)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, 2, name="pool1_pool")(x)
    for stage, (n, filters) in enumerate(zip(blocks_per_stage, (64, 128, 256, 512))):
        last_stride = 1 if stage == len(blocks_per_stage) - 1 else 2
        for i in range(n):
            x = PreactBottleneckBlock(filters, strides=last_stride if i == n - 1 else 1, conv_shortcut=i == 0,
                                      name=f"conv{stage + 2}_block{i + 1}")(x)
    x = layers.BatchNormalization(epsilon=_EPS, name="post_bn")(x)
    x = layers.ReLU(name="post_relu")(x)
    return build(inputs, classifier_head(x, classes, include_top, pooling, classifier_activation), name)


def resnet50_v2(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, name="resnet50v2",
                classifier_activation="softmax", input_tensor=None):
    """ResNet-50 v2: 25,613,800 parameters at 224x224x3/1000 (Keras applications.ResNet50V2)."""
    return resnet_v2((3, 4, 6, 3), input_shape, classes, include_top, pooling, name, classifier_activation, input_tensor)


def resnet101_v2(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, name="resnet101v2",
                 classifier_activation="softmax", input_tensor=None):
    """ResNet-101 v2 (Keras applications.ResNet101V2)."""
    return resnet_v2((3, 4, 23, 3), input_shape, classes, include_top, pooling, name, classifier_activation,
                     input_tensor)


def resnet152_v2(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, name="resnet152v2",
                 classifier_activation="softmax", input_tensor=None):
    """ResNet-152 v2 (Keras applications.ResNet152V2)."""
    return resnet_v2((3, 8, 36, 3), input_shape, classes, include_top, pooling, name, classifier_activation,
                     input_tensor)
