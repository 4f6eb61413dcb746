"""keras.applications.resnet: ResNet50, ResNet101, ResNet152 with their preprocess_input ("caffe" mode)."""
from ..models.zoo import resnet101, resnet152, resnet50
from ._application import application, legacy_file
from .imagenet_utils import decode_predictions  # noqa: F401
from .imagenet_utils import preprocess_input as _preprocess_input


def preprocess_input(x, data_format=None):
    """Images in 0..255 (RGB, NHWC) to what ResNet50 expects ("caffe" mode)."""
    return _preprocess_input(x, data_format=data_format, mode="caffe")


ResNet50 = application(__name__, "ResNet50", resnet50, 224, 32, legacy_file("resnet50"), "resnet",
    "ResNet-50 (v1, Keras's layer names).")

ResNet101 = application(__name__, "ResNet101", resnet101, 224, 32, legacy_file("resnet101"), "resnet",
    "ResNet-101 (v1, Keras's layer names).")

ResNet152 = application(__name__, "ResNet152", resnet152, 224, 32, legacy_file("resnet152"), "resnet",
    "ResNet-152 (v1, Keras's layer names).")
