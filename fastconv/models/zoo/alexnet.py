"""AlexNet (Krizhevsky et al. 2012), single tower, and Network-in-Network (Lin et al. 2013)."""
from ... import layers
from ...engine import Sequential


def alexnet(input_shape=(227, 227, 3), classes=1000, dropout=0.5, name="alexnet"):
    """Single-tower AlexNet with ReLU and dropout, 96-256-384-384-256 filters.

    At 227x227x3 and 1000 classes: 62,378,344 parameters (the paper's ~62.3M; torchvision's
    variant with 64/192 filters and adaptive pooling has 61,100,840).
    """
    return Sequential([
        layers.Input(input_shape),
        layers.Conv2D(96, 11, strides=4, activation="relu"),
        layers.MaxPooling2D(3, 2),
        layers.Conv2D(256, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(3, 2),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(256, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(3, 2),
        layers.Flatten(),
        layers.Dense(4096, activation="relu"), layers.Dropout(dropout),
        layers.Dense(4096, activation="relu"), layers.Dropout(dropout),
        layers.Dense(classes, activation="softmax"),
    ], name=name)


def nin_block(filters, kernel, strides, padding):
    """One NiN block: a spatial convolution followed by two 1x1 convolutions (the "MLP")."""
    return [layers.Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu"),
            layers.Conv2D(filters, 1, activation="relu"),
            layers.Conv2D(filters, 1, activation="relu")]


def nin(input_shape=(224, 224, 3), classes=1000, dropout=0.5, classifier_activation="softmax", name="nin"):
    """Network in Network as in d2l §8.3: four NiN blocks, the last with `classes` filters,
    then global average pooling instead of dense layers (classifier_activation=None: logits).

    Parameters do not depend on the input size: 7,439,608 for 3 input channels and 1000 classes.
    """
    return Sequential([
        layers.Input(input_shape),
        *nin_block(96, 11, 4, "valid"), layers.MaxPooling2D(3, 2),
        *nin_block(256, 5, 1, "same"), layers.MaxPooling2D(3, 2),
        *nin_block(384, 3, 1, "same"), layers.MaxPooling2D(3, 2),
        layers.Dropout(dropout),
        *nin_block(classes, 3, 1, "same"),
        layers.GlobalAveragePooling2D(),
        layers.Activation(classifier_activation),
    ], name=name)
