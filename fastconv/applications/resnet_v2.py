"""keras.applications.resnet_v2: ResNet50V2, ResNet101V2, ResNet152V2 with their preprocess_input ("tf" mode)."""
from ..models.zoo import resnet101_v2, resnet152_v2, resnet50_v2
from ._application import application, legacy_file
from .imagenet_utils import decode_predictions  # noqa: F401
from .imagenet_utils import preprocess_input as _preprocess_input


def preprocess_input(x, data_format=None):
    """Images in 0..255 (RGB, NHWC) to what ResNet50V2 expects ("tf" mode)."""
    return _preprocess_input(x, data_format=data_format, mode="tf")


ResNet50V2 = application(__name__, "ResNet50V2", resnet50_v2, 224, 32, legacy_file("resnet50v2"), "resnet",
    "ResNet-50 v2 (pre-activation), Keras's layer names.")

ResNet101V2 = application(__name__, "ResNet101V2", resnet101_v2, 224, 32, legacy_file("resnet101v2"), "resnet",
    "ResNet-101 v2 (pre-activation), Keras's layer names.")

ResNet152V2 = application(__name__, "ResNet152V2", resnet152_v2, 224, 32, legacy_file("resnet152v2"), "resnet",
    "ResNet-152 v2 (pre-activation), Keras's layer names.")
