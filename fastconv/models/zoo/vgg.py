"""VGG (Simonyan & Zisserman 2014), configurations A, B, D, E = VGG-11/13/16/19."""
from ... import layers
from ._common import build, classifier_head, model_input

_CONFIGS = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}


def _vgg(depth, input_shape, classes, include_top, pooling, name, classifier_activation="softmax", input_tensor=None):
    inputs = model_input(input_shape, input_tensor)
    x = inputs
    for stage, (convs, filters) in enumerate(zip(_CONFIGS[depth], (64, 128, 256, 512, 512)), 1):
        for i in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{stage}_conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        x = layers.Dense(4096, activation="relu", name="fc2")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = classifier_head(x, classes, False, pooling)
    return build(inputs, x, name)


def vgg11(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, name="vgg11",
          classifier_activation="softmax", input_tensor=None):
    """VGG-11; 132,863,336 parameters at 224x224x3/1000 (torchvision's vgg11)."""
    return _vgg(11, input_shape, classes, include_top, pooling, name, classifier_activation, input_tensor)


def vgg13(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, name="vgg13",
          classifier_activation="softmax", input_tensor=None):
    """VGG-13; 133,047,848 parameters at 224x224x3/1000 (torchvision's vgg13)."""
    return _vgg(13, input_shape, classes, include_top, pooling, name, classifier_activation, input_tensor)


def vgg16(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, name="vgg16",
          classifier_activation="softmax", input_tensor=None):
    """VGG-16; 138,357,544 parameters at 224x224x3/1000 (Keras applications.VGG16)."""
    return _vgg(16, input_shape, classes, include_top, pooling, name, classifier_activation, input_tensor)


def vgg19(input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, name="vgg19",
          classifier_activation="softmax", input_tensor=None):
    """VGG-19; 143,667,240 parameters at 224x224x3/1000 (Keras applications.VGG19)."""
    return _vgg(19, input_shape, classes, include_top, pooling, name, classifier_activation, input_tensor)
