"""keras.applications.xception: Xception with its preprocess_input ("tf" mode: [-1, 1])."""
from ..models.zoo import xception
from ._application import application, legacy_file
from .imagenet_utils import decode_predictions  # noqa: F401
from .imagenet_utils import preprocess_input as _preprocess_input


def preprocess_input(x, data_format=None):
    """Images in 0..255 (RGB, NHWC) scaled to [-1, 1], as Xception expects."""
    return _preprocess_input(x, data_format=data_format, mode="tf")


Xception = application(__name__, "Xception", xception, 299, 71, legacy_file("xception"), "xception",
                       "Xception (Chollet 2017), Keras's layer names.")
