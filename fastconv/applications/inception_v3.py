"""keras.applications.inception_v3: InceptionV3 with its preprocess_input ("tf" mode: [-1, 1])."""
from ..models.zoo import inception_v3
from ._application import application, legacy_file
from .imagenet_utils import decode_predictions  # noqa: F401
from .imagenet_utils import preprocess_input as _preprocess_input


def preprocess_input(x, data_format=None):
    """Images in 0..255 (RGB, NHWC) scaled to [-1, 1], as InceptionV3 expects."""
    return _preprocess_input(x, data_format=data_format, mode="tf")


InceptionV3 = application(__name__, "InceptionV3", inception_v3, 299, 75, legacy_file("inception_v3"),
                          "inception_v3", "Inception v3 (Szegedy et al. 2016), Keras's layer names.")
