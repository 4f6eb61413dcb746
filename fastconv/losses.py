"""Keras losses on autograd Tensors.

A loss is called `loss(y_true, y_pred, sample_weight=None)` with y_true an array and y_pred a
Tensor, and returns a scalar Tensor: the per-sample losses weighted and averaged over the
batch ("sum over batch size", Keras's default reduction). Without logits, probabilities are
clipped to [1e-7, 1 - 1e-7] as Keras does.

>>> import numpy as np
>>> from fastconv.autograd import Tensor
>>> loss = SparseCategoricalCrossentropy(from_logits=True)
>>> round(float(loss(np.array([0]), Tensor([[0.0, 0.0]]))), 4)
0.6931
"""
import numpy as np

from .autograd import Tensor, ops
from .autograd.tensor import as_array
from .functional import array_module, is_device_array
from .saving import serialization as _serialization

EPSILON = 1e-7


class Loss(_serialization.RecordsArguments):
    name = "loss"

    def __init__(self, name=None):
        self.name = name or self.name

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = y_pred if isinstance(y_pred, Tensor) else Tensor(y_pred)
        # Targets usually arrive as host arrays; they join y_pred on its device.
        y_true = array_module(y_pred.data).asarray(as_array(y_true))
        n = y_pred.shape[0] if y_pred.ndim else 1
        if y_true.ndim and y_true.shape[0] != n:
            raise ValueError(f"{self.name}: y_true has {y_true.shape[0]} samples but y_pred has {n} "
                             f"(shapes {tuple(y_true.shape)} and {y_pred.shape})")
        per_sample = self.call(y_true, y_pred)
        if sample_weight is None:
            return per_sample.mean()
        w = self._weights(sample_weight, per_sample)
        # Keras's "sum over batch size": weighted sum / number of losses (not sum of weights).
        return (per_sample * w).sum() / float(max(per_sample.size, 1))

    def _weights(self, sample_weight, per_sample):
        w = array_module(per_sample.data).asarray(as_array(sample_weight), dtype=per_sample.dtype)
        if w.size == per_sample.size:
            return w.reshape(per_sample.shape)
        if w.ndim <= per_sample.ndim and per_sample.shape[:w.ndim] == tuple(w.shape):
            return w.reshape(tuple(w.shape) + (1,) * (per_sample.ndim - w.ndim))
        raise ValueError(f"{self.name}: sample_weight of shape {tuple(w.shape)} does not match "
                         f"the per-sample losses of shape {per_sample.shape}")

    def call(self, y_true, y_pred):
        raise NotImplementedError

    def get_config(self):
        return {**_serialization.arguments_config(self), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return _serialization.from_config_arguments(cls, config)


def _clipped(p):
    return p.clip(EPSILON, 1.0 - EPSILON)


def _check_sparse(labels, num_classes, name):
    xp = array_module(labels)
    if labels.dtype.kind not in "biuf":
        raise TypeError(f"{name}: y_true must hold integer class indices, got dtype {labels.dtype}")
    if is_device_array(labels):
        # Checking values would read them back to the host every step; on the GPU an
        # out-of-range or fractional label is trusted (an out-of-range one gives a NaN loss).
        return labels.astype(xp.int64).reshape(-1)
    if labels.dtype.kind == "f" and not bool(xp.all(labels == xp.floor(labels))):
        raise ValueError(f"{name}: y_true must hold integer class indices")
    labels = labels.astype(np.int64).reshape(-1)
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{name}: labels must be in [0, {num_classes}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return labels


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, name=None):
        super().__init__(name)
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        if tuple(y_true.shape) != y_pred.shape[:-1]:
            raise ValueError(f"{self.name}: y_true {tuple(y_true.shape)} must hold one class index "
                             f"per row of y_pred {y_pred.shape}")
        labels = _check_sparse(y_true, y_pred.shape[-1], self.name)
        rows2d = y_pred if y_pred.ndim == 2 else y_pred.reshape(-1, y_pred.shape[-1])
        if self.from_logits:
            per = ops.softmax_cross_entropy(rows2d, labels)
        else:
            # Keras normalises the probabilities to sum 1, then clips, then takes the log.
            probs = rows2d / rows2d.sum(axis=-1, keepdims=True)
            rows = array_module(labels).arange(labels.shape[0])
            per = -_clipped(probs[rows, labels]).log()
        return per if y_pred.ndim == 2 else per.reshape(y_pred.shape[:-1])


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name)
        self.from_logits, self.label_smoothing = from_logits, float(label_smoothing)

    def call(self, y_true, y_pred):
        if tuple(y_true.shape) != y_pred.shape:
            raise ValueError(f"{self.name}: y_true {tuple(y_true.shape)} and y_pred {y_pred.shape} "
                             "must have the same shape (one-hot targets)")
        y = y_true.astype(y_pred.dtype)
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + self.label_smoothing / y.shape[-1]
        if self.from_logits:
            logp = ops.log_softmax(y_pred)
        else:
            logp = _clipped(y_pred / y_pred.sum(axis=-1, keepdims=True)).log()
        return -(logp * y).sum(axis=-1)


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name)
        self.from_logits, self.label_smoothing = from_logits, float(label_smoothing)

    def call(self, y_true, y_pred):
        y = y_true.astype(y_pred.dtype).reshape(y_pred.shape)
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            # max(z, 0) - z*y + log(1 + exp(-|z|)): no overflow for large |z|.
            z = y_pred
            per = ops.relu(z) - z * y + ((-z.abs()).exp() + 1.0).log()
        else:
            p = _clipped(y_pred)
            per = -(p.log() * y + (1.0 - p).log() * (1.0 - y))
        return per.mean(axis=-1) if per.ndim > 1 else per


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def call(self, y_true, y_pred):
        diff = y_pred - y_true.astype(y_pred.dtype).reshape(y_pred.shape)
        sq = diff * diff
        return sq.mean(axis=-1) if sq.ndim > 1 else sq


class Huber(Loss):
    """Huber loss: 0.5 * e**2 where |e| <= delta, else delta * (|e| - 0.5 * delta), for
    e = y_pred - y_true, averaged over the last axis (Keras's formula)."""
    name = "huber_loss"

    def __init__(self, delta=1.0, name=None):
        super().__init__(name)
        if delta is None or not float(delta) >= 0:
            raise ValueError(f"Huber: delta must be a float >= 0, got {delta!r}")
        self.delta = float(delta)

    def call(self, y_true, y_pred):
        return _huber_per_sample(y_true, y_pred, self.delta)


def _huber_per_sample(y_true, y_pred, delta):
    error = y_pred - y_true.astype(y_pred.dtype).reshape(y_pred.shape)
    size = error.abs()
    # where() on the comparison: a NaN error fails it and stays NaN in the linear branch.
    per = ops.where(size.data <= delta, error * error * 0.5, size * delta - 0.5 * delta * delta)
    return per.mean(axis=-1) if per.ndim > 1 else per


def huber(y_true, y_pred, delta=1.0):
    """Keras's `losses.huber`: the per-sample Huber losses (last axis averaged), not reduced."""
    y_pred = y_pred if isinstance(y_pred, Tensor) else Tensor(y_pred)
    return _huber_per_sample(array_module(y_pred.data).asarray(as_array(y_true)), y_pred, float(delta))


_ALIASES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "huber": Huber,
    "huber_loss": Huber,
}


def get(identifier):
    """A Loss from a Keras name, an instance, or any callable(y_true, y_pred)."""
    if identifier is huber:  # the per-sample function: compile needs the batch-averaging class
        return Huber()
    if isinstance(identifier, Loss) or (callable(identifier) and not isinstance(identifier, type)):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str) and identifier.lower() in _ALIASES:
        return _ALIASES[identifier.lower()]()
    raise ValueError(f"unknown loss {identifier!r}; expected one of {sorted(_ALIASES)}, a Loss or a callable")


sparse_categorical_crossentropy = SparseCategoricalCrossentropy()
categorical_crossentropy = CategoricalCrossentropy()
binary_crossentropy = BinaryCrossentropy()
mean_squared_error = mse = MeanSquaredError()
