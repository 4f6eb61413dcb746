"""keras.applications.mobilenet: MobileNet with their preprocess_input ("tf" mode)."""
from ..models.zoo import mobilenet
from ._application import application
from .imagenet_utils import decode_predictions  # noqa: F401
from .imagenet_utils import preprocess_input as _preprocess_input


def _mobilenet_file(include_top, input_shape, alpha=1.0, **extra):
    alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}.get(alpha, str(alpha))
    return f"mobilenet_{alpha_text}_{input_shape[0]}_tf{'' if include_top else '_no_top'}.h5"


def preprocess_input(x, data_format=None):
    """Images in 0..255 (RGB, NHWC) to what MobileNet expects ("tf" mode)."""
    return _preprocess_input(x, data_format=data_format, mode="tf")


MobileNet = application(__name__, "MobileNet", mobilenet, 224, 32, _mobilenet_file, "mobilenet",
    "MobileNet v1 (alpha, depth_multiplier, dropout as Keras), Keras's layer names.")
