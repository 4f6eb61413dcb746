"""MobileNet v1 (Howard et al. 2017): depthwise-separable convolutions, width multiplier."""
from ... import layers
from ...engine.fusion import run_layers
from ...layers import Layer
from ._common import build, model_input

_CONFIG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class DepthwiseSeparableBlock(Layer):
    """Depthwise 3x3 (stride) - BN - ReLU6 - pointwise 1x1 - BN - ReLU6, biases off.
    Strided blocks pad bottom/right by one and convolve 'valid', as Keras does."""

    def __init__(self, filters, strides=1, depth_multiplier=1, block_id=None, **kwargs):
        super().__init__(**kwargs)
        # Keras applications' names (conv_dw_3, conv_pw_3_bn, ...) when block_id is given.
        names = (lambda n: f"conv_{n}_{block_id}" if n in ("dw", "pw", "pad") else f"conv_{n[:2]}_{block_id}_{n[3:]}") \
            if block_id is not None else (lambda n: None)
        pad = [] if strides == 1 else [layers.ZeroPadding2D(((0, 1), (0, 1)), name=names("pad"))]
        self.seq = pad + [
            layers.DepthwiseConv2D(3, strides=strides, padding="same" if strides == 1 else "valid",
                                   depth_multiplier=depth_multiplier, use_bias=False, name=names("dw")),
            layers.BatchNormalization(name=names("dw_bn")), layers.ReLU(6.0, name=names("dw_relu")),
            layers.Conv2D(filters, 1, use_bias=False, name=names("pw")),
            layers.BatchNormalization(name=names("pw_bn")), layers.ReLU(6.0, name=names("pw_relu"))]

    def call(self, x, training=None):
        return run_layers(self.seq, x, training)

    def _inference_graph(self, graph, x):
        """call() described to an inference plan (engine/inference.py)."""
        return graph.layers(self.seq, x)


def mobilenet(input_shape=(224, 224, 3), classes=1000, alpha=1.0, depth_multiplier=1, dropout=1e-3,
              include_top=True, pooling=None, name="mobilenet", classifier_activation="softmax", input_tensor=None):
    """MobileNet v1 as Keras applications builds it: 4,253,864 parameters at alpha=1.0,
    224x224x3/1000 (a 1x1 convolution with bias as the classifier)."""
    inputs = model_input(input_shape, input_tensor)
    x = layers.Conv2D(int(32 * alpha), 3, strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(6.0, name="conv1_relu")(x)
    for block_id, (filters, strides) in enumerate(_CONFIG, 1):
        x = DepthwiseSeparableBlock(int(filters * alpha), strides, depth_multiplier, block_id=block_id,
                                    name=f"conv_block_{block_id}")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Conv2D(classes, 1, padding="same", name="conv_preds")(x)
        x = layers.Reshape((classes,), name="reshape_2")(x)
        x = layers.Activation(classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D()(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D()(x)
    return build(inputs, x, name)
