"""keras.applications.efficientnet: EfficientNetB0. The model rescales and normalizes its input
itself (images in 0..255), so preprocess_input passes the input through, as in Keras."""
import numpy as np

from ..models.zoo import efficientnet_b0
from ._application import application
from .imagenet_utils import decode_predictions  # noqa: F401


def preprocess_input(x, data_format=None):
    """The input unchanged: EfficientNet's Rescaling and Normalization are part of the model."""
    if data_format not in (None, "channels_last"):
        raise ValueError(f"preprocess_input: fastconv is channels-last (NHWC); data_format={data_format!r}")
    return np.asarray(x)


def _efficientnet_file(include_top, input_shape, **extra):
    return f"efficientnetb0{'' if include_top else '_notop'}.h5"


EfficientNetB0 = application(__name__, "EfficientNetB0", efficientnet_b0, 224, 32, _efficientnet_file,
                             "https://storage.googleapis.com/keras-applications/",
                             "EfficientNet-B0 (Tan & Le 2019), Keras's layer names.")
