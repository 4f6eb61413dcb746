"""keras.applications.resnet50: ResNet50 and its preprocess_input (Keras's older path)."""
from .resnet import ResNet50, decode_predictions, preprocess_input  # noqa: F401
