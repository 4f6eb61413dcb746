"""Weighted true/false positive/negative counts at thresholds, as Keras's metrics keep them.

A prediction is positive at threshold t when it is strictly greater than t; y_true is read as a
bool. `top_k` keeps only each row's k highest predictions (the others count as negative) and
`class_id` then keeps one column, both as Keras's Precision/Recall do. Counts are accumulated
on the host in float64 (they are small: one number per threshold)."""
import numpy as np

from ..functional import is_device_array


def host(value):
    if is_device_array(value):
        from ..cuda import to_host
        return np.asarray(to_host(value))
    return np.asarray(value)


def prepare(name, y_true, y_pred, sample_weight=None, top_k=None, class_id=None, labels=None):
    """(bool y_true, float y_pred, float64 weights) after top_k/class_id, flat, or of shape
    (samples, labels) when `labels` is given (AUC's multi_label)."""
    y_true, y_pred = host(y_true), host(y_pred).astype(np.float64)
    if y_true.shape != y_pred.shape and y_true.size == y_pred.size:
        y_true = y_true.reshape(y_pred.shape)  # (N,) labels against (N, 1) predictions
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true of shape {y_true.shape} does not match y_pred of shape {y_pred.shape}")
    weights = np.ones(y_pred.shape)
    if sample_weight is not None:
        w = host(sample_weight).astype(np.float64)
        try:
            weights = np.broadcast_to(w.reshape(w.shape + (1,) * (y_pred.ndim - w.ndim)), y_pred.shape)
        except ValueError:
            raise ValueError(f"{name}: sample_weight of shape {w.shape} does not match y_pred of shape "
                             f"{y_pred.shape}") from None
    if top_k is not None:
        # Keras: everything outside a row's top k becomes -inf (so never positive).
        order = np.argsort(-y_pred, axis=-1, kind="stable")[..., :top_k]
        keep = np.zeros(y_pred.shape, bool)
        np.put_along_axis(keep, order, True, axis=-1)
        y_pred = np.where(keep, y_pred, -np.inf)
    if class_id is not None:
        if not -y_pred.shape[-1] <= class_id < y_pred.shape[-1]:
            raise ValueError(f"{name}: class_id {class_id} is out of range for {y_pred.shape[-1]} classes")
        y_true, y_pred, weights = y_true[..., class_id], y_pred[..., class_id], weights[..., class_id]
    if labels is not None and y_pred.shape[-1:] != (labels,):
        raise ValueError(f"{name}: expected predictions with {labels} labels on the last axis, got shape "
                         f"{y_pred.shape}")
    shape = (-1,) if labels is None else (-1, labels)
    return (y_true.reshape(shape).astype(bool), y_pred.reshape(shape),
            np.asarray(weights, np.float64).reshape(shape))


def confusion(y_true, y_pred, weights, thresholds):
    """(tp, fp, tn, fn), each of shape (len(thresholds),) for flat inputs, (len(thresholds),
    labels) for inputs of shape (samples, labels)."""
    t = np.asarray(thresholds, np.float64).reshape((-1,) + (1,) * y_pred.ndim)
    positive = y_pred[None] > t
    # A NaN prediction fails every comparison: counted as negative, as Keras does.
    pos_w, neg_w = weights * y_true, weights * ~y_true
    tp, fp = (positive * pos_w).sum(axis=1), (positive * neg_w).sum(axis=1)
    return tp, fp, neg_w.sum(axis=0) - fp, pos_w.sum(axis=0) - tp


def divide_no_nan(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))


def check_thresholds(name, thresholds):
    values = np.atleast_1d(np.asarray(thresholds, np.float64))
    if values.ndim != 1 or not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"{name}: thresholds must be floats in [0, 1], got {thresholds!r}")
    return values
