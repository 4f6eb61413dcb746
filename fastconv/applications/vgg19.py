"""keras.applications.vgg19: VGG19 with their preprocess_input ("caffe" mode)."""
from ..models.zoo import vgg19
from ._application import application, legacy_file
from .imagenet_utils import decode_predictions  # noqa: F401
from .imagenet_utils import preprocess_input as _preprocess_input


def preprocess_input(x, data_format=None):
    """Images in 0..255 (RGB, NHWC) to what VGG19 expects ("caffe" mode)."""
    return _preprocess_input(x, data_format=data_format, mode="caffe")


VGG19 = application(__name__, "VGG19", vgg19, 224, 32, legacy_file("vgg19"), "vgg19",
    "VGG-19, Keras's layer names.")
