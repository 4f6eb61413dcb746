"""keras.applications.vgg16: VGG16 with their preprocess_input ("caffe" mode)."""
from ..models.zoo import vgg16
from ._application import application, legacy_file
from .imagenet_utils import decode_predictions  # noqa: F401
from .imagenet_utils import preprocess_input as _preprocess_input


def preprocess_input(x, data_format=None):
    """Images in 0..255 (RGB, NHWC) to what VGG16 expects ("caffe" mode)."""
    return _preprocess_input(x, data_format=data_format, mode="caffe")


VGG16 = application(__name__, "VGG16", vgg16, 224, 32, legacy_file("vgg16"), "vgg16",
    "VGG-16 (Simonyan & Zisserman 2014), Keras's layer names.")
