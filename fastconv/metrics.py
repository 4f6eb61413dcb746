"""Metrics on plain arrays, Keras names and semantics: `update_state(y_true, y_pred,
sample_weight=None)` accumulates a (weighted) mean, `result()` returns it as a float (a
`MetricResult`, which also has Keras's `.numpy()`), `reset_state()` clears it.

>>> m = SparseCategoricalAccuracy()
>>> m.update_state([0, 2], [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]]); m.result()
0.5
"""
import re
import warnings

import numpy as np

from .functional import array_module, array_of, is_device_array
from .saving import serialization as _serialization


def _arrays(*values):
    """The arrays on one device: all on the GPU when any is a device array (host ones are
    copied there), else NumPy. Metrics then accumulate where the predictions are, so a
    training step on the GPU never waits for a host read."""
    values = [array_of(v) for v in values]
    device = next((v for v in values if is_device_array(v)), None)
    if device is None:
        return values
    xp = array_module(device)
    return [xp.asarray(v) for v in values]


class Metric(_serialization.RecordsArguments):
    """Base: subclasses implement `update_state`; this class keeps a weighted mean.
    `result()` is a float, or a 0-d device array for values given on the GPU (read it with
    float() when needed: that waits for the GPU)."""

    def __init__(self, name=None, dtype=None):
        self.name = name or _snake(type(self).__name__)
        self.dtype = dtype
        self.reset_state()

    def reset_state(self):
        self.total, self.count = 0.0, 0.0

    def _add(self, values, sample_weight=None):
        xp = array_module(values)
        values = values.astype(np.float64)
        if sample_weight is None:
            self.total = _accumulate(self.total, values.sum())
            self.count += float(values.size)
            return
        w = _arrays(values, sample_weight)[1].astype(np.float64)
        try:
            w = xp.broadcast_to(w.reshape(w.shape + (1,) * (values.ndim - w.ndim)), values.shape)
        except ValueError:
            raise ValueError(f"{self.name}: sample_weight of shape {w.shape} does not match values of "
                             f"shape {values.shape}") from None
        self.total = _accumulate(self.total, (values * w).sum())
        self.count = _accumulate(self.count, w.sum())

    def result(self):
        return _result(_mean(self.total, self.count))

    def reset_states(self):
        """Keras 2 name of `reset_state` (deprecated there too)."""
        warnings.warn("Metric.reset_states() is the Keras 2 name; use reset_state()",
                      DeprecationWarning, stacklevel=2)
        self.reset_state()

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.update_state(y_true, y_pred, sample_weight=sample_weight)
        return self.result()

    def get_config(self):
        return {**_serialization.arguments_config(self), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return _serialization.from_config_arguments(cls, config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={float(self.result()):.4g}>"


class MetricResult(float):
    """A metric's host result: a Python float (so logs, formatting, JSON and arithmetic treat
    it as one) that also has Keras's `.numpy()`, which scripts call on `result()`."""

    __slots__ = ()

    def numpy(self):
        return np.float32(self)


def _result(value):
    # Device values stay 0-d device arrays (reading them would wait for the GPU).
    return value if is_device_array(value) else MetricResult(value)


def _accumulate(total, value):
    """total + value: a float for host values, a 0-d device array for device ones."""
    if is_device_array(value):
        return value + total
    return total + float(value)


def _mean(total, count):
    """total / count, 0 when nothing was counted; stays on the device for device sums."""
    if not is_device_array(count):
        return total / count if count else total * 0.0
    xp = array_module(count)
    seen = count > 0
    return xp.where(seen, total, 0.0) / xp.where(seen, count, 1.0)


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Mean(Metric):
    """Weighted mean of the values given to `update_state(values, sample_weight=None)`."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, values, sample_weight=None):
        self._add(_arrays(values)[0], sample_weight)


def _squeeze_labels(y_true, y_pred):
    """Sparse labels (N,) or (N, 1) against predictions (N, C)."""
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(f"sparse labels of shape {y_true.shape} do not match predictions of shape "
                         f"{y_pred.shape} (expected labels of shape {y_pred.shape[:-1]})")
    return y_true


def _same_shape(name, y_true, y_pred):
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true of shape {y_true.shape} does not match y_pred of shape {y_pred.shape}")


class Accuracy(Metric):
    """Fraction of elements where y_pred == y_true exactly."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _arrays(y_true, y_pred)
        _same_shape(self.name, y_true, y_pred)
        self._add(y_true == y_pred, sample_weight)


class SparseCategoricalAccuracy(Metric):
    """argmax(y_pred) == integer label."""

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _arrays(y_true, y_pred)
        y_true = _squeeze_labels(y_true, y_pred)
        self._add(y_pred.argmax(-1) == y_true.astype(np.int64), sample_weight)


class CategoricalAccuracy(Metric):
    """argmax(y_pred) == argmax(one-hot y_true)."""

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _arrays(y_true, y_pred)
        _same_shape(self.name, y_true, y_pred)
        self._add(y_pred.argmax(-1) == y_true.argmax(-1), sample_weight)


class BinaryAccuracy(Metric):
    """(y_pred > threshold) == y_true, element-wise (Keras applies the threshold whether the
    model outputs probabilities or logits)."""

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        super().__init__(name, dtype)
        self.threshold = float(threshold)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _arrays(y_true, y_pred)
        if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
            y_true = y_true[..., None]
        _same_shape(self.name, y_true, y_pred)
        self._add((y_pred > self.threshold) == y_true.astype(bool), sample_weight)


def _in_top_k(labels, y_pred, k):
    # TF's in_top_k: a label ties its way in, i.e. it is in the top k when fewer than k
    # classes score strictly higher.
    target = array_module(y_pred).take_along_axis(y_pred, labels.astype(np.int64)[..., None], -1)
    return (y_pred > target).sum(-1) < k


class TopKCategoricalAccuracy(Metric):
    """argmax(one-hot y_true) is among the k highest predictions."""

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(name, dtype)
        self.k = int(k)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _arrays(y_true, y_pred)
        _same_shape(self.name, y_true, y_pred)
        self._add(_in_top_k(y_true.argmax(-1), y_pred, self.k), sample_weight)


class SparseTopKCategoricalAccuracy(Metric):
    """The integer label is among the k highest predictions."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None):
        super().__init__(name, dtype)
        self.k = int(k)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _arrays(y_true, y_pred)
        self._add(_in_top_k(_squeeze_labels(y_true, y_pred), y_pred, self.k), sample_weight)


class MeanSquaredError(Metric):
    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _arrays(y_true, y_pred)
        self._add(((y_pred - y_true.reshape(y_pred.shape)) ** 2).reshape(len(y_pred), -1).mean(-1), sample_weight)


class MeanAbsoluteError(Metric):
    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _arrays(y_true, y_pred)
        self._add(abs(y_pred - y_true.reshape(y_pred.shape)).reshape(len(y_pred), -1).mean(-1), sample_weight)


class _AutoAccuracy(Metric):
    """'accuracy' with a loss that does not say which: decided on the first batch from the
    shapes, as Keras 3 does (one output unit: binary; labels of lower rank or a last axis of
    1: sparse; otherwise categorical)."""

    def __init__(self, name="accuracy"):
        self._impl = None
        super().__init__(name)

    def reset_state(self):
        if getattr(self, "_impl", None) is not None:
            self._impl.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self._impl is None:
            yt, yp = _arrays(y_true, y_pred)
            if yp.shape[-1:] == (1,):
                self._impl = BinaryAccuracy(self.name)
            elif yt.ndim < yp.ndim or yt.shape[-1:] == (1,):
                self._impl = SparseCategoricalAccuracy(self.name)
            else:
                self._impl = CategoricalAccuracy(self.name)
        self._impl.update_state(y_true, y_pred, sample_weight=sample_weight)

    def result(self):
        return MetricResult(0.0) if self._impl is None else self._impl.result()


from .confusion_metrics import AUC, Precision, Recall  # noqa: E402 (they subclass Metric)

_BY_NAME = {
    "accuracy": Accuracy, "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy, "binary_accuracy": BinaryAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError, "mean": Mean,
    "precision": Precision, "recall": Recall, "auc": AUC,
}


def _loss_name(loss):
    if loss is None:
        return ""
    if isinstance(loss, str):
        return loss.lower()
    name = getattr(loss, "__name__", None) or type(loss).__name__
    return _snake(name)


def get(identifier, loss=None):
    """A Metric from a name, a Metric instance (returned as is) or a class.

    'accuracy' / 'acc' follow Keras compile: the loss picks the variant (sparse categorical,
    categorical or binary crossentropy → the matching accuracy, named as given); other losses
    decide from the shapes of the first batch. Other names give a metric named as written
    (e.g. 'mse' is logged as 'mse')."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if not isinstance(identifier, str):
        raise ValueError(f"Could not interpret metric identifier: {identifier!r}")
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        lname = _loss_name(loss)
        if "sparse_categorical" in lname:
            return SparseCategoricalAccuracy(name=identifier)
        if "categorical_crossentropy" in lname:
            return CategoricalAccuracy(name=identifier)
        if "binary_crossentropy" in lname:
            return BinaryAccuracy(name=identifier)
        return _AutoAccuracy(name=identifier)
    cls = _BY_NAME.get(key)
    if cls is None:
        raise ValueError(f"Could not interpret metric identifier: {identifier!r}; known names: "
                         f"{sorted(_BY_NAME) + ['acc']}")
    return cls(name=identifier)
