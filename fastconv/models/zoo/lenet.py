"""LeNet-5 (LeCun et al. 1998), as the d2l book builds it for 28x28 inputs."""
from ... import layers
from ...engine import Sequential


def lenet5(input_shape=(28, 28, 1), classes=10, variant="classic", classifier_activation="softmax", name="lenet5"):
    """LeNet-5.

    classic: conv5x5 6 ('same') → sigmoid → avgpool 2 → conv5x5 16 → sigmoid → avgpool 2 →
    dense 120 → 84 → classes, sigmoid hidden activations (d2l §7.6). modern: ReLU and max-pooling.
    On 28x28x1 the outputs are 28x28x6, 14x14x6, 10x10x16, 5x5x16, 400, 120, 84, 10 and the
    model has 61,706 parameters (the d2l count). classifier_activation=None returns logits
    (train with ``SparseCategoricalCrossentropy(from_logits=True)``: one fused, stable kernel).

    >>> lenet5().count_params()
    61706
    """
    if variant not in ("classic", "modern"):
        raise ValueError(f"variant must be 'classic' or 'modern', got {variant!r}")
    act = "sigmoid" if variant == "classic" else "relu"
    pool = layers.AveragePooling2D if variant == "classic" else layers.MaxPooling2D
    return Sequential([
        layers.Input(input_shape),
        layers.Conv2D(6, 5, padding="same", activation=act),
        pool(2),
        layers.Conv2D(16, 5, activation=act),
        pool(2),
        layers.Flatten(),
        layers.Dense(120, activation=act),
        layers.Dense(84, activation=act),
        layers.Dense(classes, activation=classifier_activation),
    ], name=name)
