"""keras.applications.mobilenet_v2: MobileNetV2 with their preprocess_input ("tf" mode)."""
from ..models.zoo import mobilenet_v2
from ._application import application
from .imagenet_utils import decode_predictions  # noqa: F401
from .imagenet_utils import preprocess_input as _preprocess_input


def _mobilenet_v2_file(include_top, input_shape, alpha=1.0, **extra):
    return (f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{input_shape[0]}"
            f"{'' if include_top else '_no_top'}.h5")


def preprocess_input(x, data_format=None):
    """Images in 0..255 (RGB, NHWC) to what MobileNetV2 expects ("tf" mode)."""
    return _preprocess_input(x, data_format=data_format, mode="tf")


MobileNetV2 = application(__name__, "MobileNetV2", mobilenet_v2, 224, 32, _mobilenet_v2_file, "mobilenet_v2",
    "MobileNet v2 (alpha as Keras), Keras's layer names.")
