"""keras.applications.densenet: DenseNet121, DenseNet169, DenseNet201 with their preprocess_input ("torch" mode)."""
from ..models.zoo import densenet121, densenet169, densenet201
from ._application import application, legacy_file
from .imagenet_utils import decode_predictions  # noqa: F401
from .imagenet_utils import preprocess_input as _preprocess_input


def preprocess_input(x, data_format=None):
    """Images in 0..255 (RGB, NHWC) to what DenseNet121 expects ("torch" mode)."""
    return _preprocess_input(x, data_format=data_format, mode="torch")


DenseNet121 = application(__name__, "DenseNet121", densenet121, 224, 32, legacy_file("densenet121"), "densenet",
    "DenseNet-121, Keras's layer names.")

DenseNet169 = application(__name__, "DenseNet169", densenet169, 224, 32, legacy_file("densenet169"), "densenet",
    "DenseNet-169, Keras's layer names.")

DenseNet201 = application(__name__, "DenseNet201", densenet201, 224, 32, legacy_file("densenet201"), "densenet",
    "DenseNet-201, Keras's layer names.")
