"""ImageNet preprocessing modes and decode_predictions, as keras.applications.imagenet_utils.

Modes (channels-last input in 0..255, RGB):
- "caffe" (VGG, ResNet v1): RGB -> BGR, minus the ImageNet mean per channel, no scaling;
- "tf" (ResNet v2, MobileNet, MobileNetV2, Inception, Xception): scaled to [-1, 1];
- "torch" (DenseNet): scaled to [0, 1], minus mean, divided by std per channel (RGB).
The input is never modified; a new float32 array is returned (a float64 input stays float64).
"""
import json
import os

import numpy as np

_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
_TORCH_MEAN, _TORCH_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
_CLASS_INDEX_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_class_index.json")
_class_index = None


def preprocess_input(x, data_format=None, mode="caffe"):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"preprocess_input: fastconv is channels-last (NHWC); data_format={data_format!r}")
    if mode not in ("caffe", "tf", "torch"):
        raise ValueError(f"preprocess_input: mode must be 'caffe', 'tf' or 'torch', got {mode!r}")
    x = np.asarray(x)
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"preprocess_input: expected images (..., height, width, 3) in RGB, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"preprocess_input: expected a numeric array, got dtype {x.dtype}")
    dtype = x.dtype if x.dtype == np.float64 else np.float32
    x = x.astype(dtype)  # a copy: the caller's array is left as it was
    if mode == "tf":
        return x / dtype(127.5) - dtype(1.0)
    if mode == "torch":
        return ((x / dtype(255.0) - _TORCH_MEAN.astype(dtype)) / _TORCH_STD.astype(dtype)).astype(dtype)
    return (x[..., ::-1] - _CAFFE_MEAN_BGR.astype(dtype)).astype(dtype)


def class_index():
    """{index: (wordnet id, class name)} of the 1000 ImageNet classes (shipped with fastconv:
    Keras's imagenet_class_index.json)."""
    global _class_index
    if _class_index is None:
        with open(_CLASS_INDEX_FILE, encoding="utf-8") as f:
            _class_index = {int(k): tuple(v) for k, v in json.load(f).items()}
    return _class_index


def decode_predictions(preds, top=5):
    """[[(wordnet id, class name, score), ...] per sample], best first, for (N, 1000) predictions."""
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(f"decode_predictions expects ImageNet predictions of shape (samples, 1000), got "
                         f"shape {preds.shape}")
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"decode_predictions: top must be a positive int, got {top!r}")
    index = class_index()
    out = []
    for row in preds:
        best = np.argsort(-row, kind="stable")[:top]
        out.append([(*index[int(i)], float(row[i])) for i in best])
    return out
