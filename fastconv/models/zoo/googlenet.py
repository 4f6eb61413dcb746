"""GoogLeNet / Inception v1 (Szegedy et al. 2014), without the auxiliary classifiers."""
from ... import layers
from ...autograd import ops
from ...engine.fusion import run_layers
from ...layers import Layer
from ._common import build

# (1x1, (3x3 reduce, 3x3), (5x5 reduce, 5x5), pool proj) per block: Table 1 of the paper.
_TABLE1 = {
    "3a": (64, (96, 128), (16, 32), 32), "3b": (128, (128, 192), (32, 96), 64),
    "4a": (192, (96, 208), (16, 48), 64), "4b": (160, (112, 224), (24, 64), 64),
    "4c": (128, (128, 256), (24, 64), 64), "4d": (112, (144, 288), (32, 64), 64),
    "4e": (256, (160, 320), (32, 128), 128), "5a": (256, (160, 320), (32, 128), 128),
    "5b": (384, (192, 384), (48, 128), 128),
}


class InceptionBlock(Layer):
    """Four branches concatenated on channels: 1x1; 1x1→3x3; 1x1→5x5; 3x3 max-pool→1x1."""

    def __init__(self, c1, c3, c5, pool_proj, **kwargs):
        super().__init__(**kwargs)
        conv = lambda f, k: layers.Conv2D(f, k, padding="same", activation="relu")  # noqa: E731
        self.branches = [
            [conv(c1, 1)],
            [conv(c3[0], 1), conv(c3[1], 3)],
            [conv(c5[0], 1), conv(c5[1], 5)],
            [layers.MaxPooling2D(3, 1, padding="same"), conv(pool_proj, 1)],
        ]

    def call(self, x, training=None):
        return ops.concatenate([run_layers(branch, x, training) for branch in self.branches], axis=-1)


def googlenet(input_shape=(224, 224, 3), classes=1000, dropout=0.4, name="googlenet"):
    """GoogLeNet as in Table 1 of the paper (ReLU convolutions with bias, no LRN, no auxiliary
    heads): 6,998,552 parameters at 1000 classes — the sum over Table 1's layers (the
    paper's "~6.8M" omits biases). Softmax output."""
    inputs = layers.Input(input_shape)
    x = layers.Conv2D(64, 7, strides=2, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(3, 2, padding="same")(x)
    x = layers.Conv2D(64, 1, activation="relu")(x)
    x = layers.Conv2D(192, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(3, 2, padding="same")(x)
    for key in ("3a", "3b", "pool", "4a", "4b", "4c", "4d", "4e", "pool", "5a", "5b"):
        x = layers.MaxPooling2D(3, 2, padding="same")(x) if key == "pool" else InceptionBlock(*_TABLE1[key])(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(classes, activation="softmax")(x)
    return build(inputs, x, name)
