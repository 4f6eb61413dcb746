"""Keras's array helpers: `to_categorical` (one-hot labels) and `normalize` (unit-norm rows).

>>> to_categorical([0, 2, 1], 3)
array([[1., 0., 0.],
       [0., 0., 1.],
       [0., 1., 0.]], dtype=float32)
>>> normalize([[3.0, 4.0]])
array([[0.6, 0.8]])
"""
import numpy as np


def to_categorical(y, num_classes=None):
    """One-hot float32 array: labels of shape S become S + (num_classes,), except that a
    trailing axis of 1 is dropped first ((n, 1) -> (n, num_classes)), as Keras does.
    num_classes defaults to max(y) + 1. Labels must be integers in [0, num_classes)."""
    y = np.asarray(y)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("to_categorical expects integer class labels, got non-integer values")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"to_categorical expects integer class labels, got dtype {y.dtype}")
    shape = y.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = y.reshape(-1).astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"to_categorical: labels must be >= 0, got {int(labels.min())}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    num_classes = int(num_classes)
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"to_categorical: label {int(labels.max())} is out of range for "
                         f"num_classes={num_classes} (labels must be in [0, {num_classes}))")
    out = np.zeros((labels.size, num_classes), np.float32)
    out[np.arange(labels.size), labels] = 1.0
    return out.reshape(shape + (num_classes,))


def normalize(x, axis=-1, order=2):
    """x divided by its `order`-norm along `axis`; zero vectors stay zero (their norm is taken
    as 1, so no NaN appears)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fc":
        x = x.astype(np.float64)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)
