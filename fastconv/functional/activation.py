"""Bias add + activation, softmax and softmax cross-entropy on arrays, any backend.

>>> import numpy as np
>>> from fastconv import functional as F
>>> F.bias_activation(np.array([[-1.0, 2.0]], np.float32), np.array([0.5, 0.5], np.float32), "relu")
array([[0. , 2.5]], dtype=float32)
"""
from ._args import array_module, floats, kernels, labels_array

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")


_NAMES = {a: a for a in ACTIVATIONS}


def _activation_name(activation):
    # an exact str is looked up (~0.1 us); the general path costs ~0.4 us a call
    if type(activation) is str:
        name = _NAMES.get(activation)
        if name is not None:
            return name
    elif activation is None:
        return "linear"
    name = "linear" if activation is None else str(activation).lower()
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return name


def bias_activation(x, b=None, activation="linear"):
    """y = activation(x + b), b broadcast over the last axis."""
    x, b = floats(x, "x"), floats(b, "b")
    if b is not None and (b.ndim != 1 or x.ndim < 1 or b.shape[0] != x.shape[-1]):
        raise ValueError(f"b must have shape ({x.shape[-1] if x.ndim else '?'},) to match x {tuple(x.shape)}, "
                         f"got {tuple(b.shape)}")
    return kernels().bias_act_forward(x, b, _activation_name(activation))


def add_activation(a, b, activation="linear"):
    """y = activation(a + b) in one pass, a and b of one shape (a residual join and its relu)."""
    a, b = floats(a, "a"), floats(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"b must have the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    return kernels().add_act_forward(a, b, _activation_name(activation))


def bias_activation_backward(dy, y, activation="linear", need_db=True):
    """(dz, db or None): dz = dy * activation'(z), computed from the output y."""
    dy, y = floats(dy, "dy"), floats(y, "y")
    if dy.shape != y.shape:
        raise ValueError(f"dy must have the shape of y {tuple(y.shape)}, got {tuple(dy.shape)}")
    return kernels().bias_act_backward(dy, y, _activation_name(activation), bool(need_db))


def _rows(x):
    if x.ndim < 1:
        raise ValueError("x must have at least one axis")
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x


def softmax(x):
    """Softmax over the last axis (max-shifted, stable for large inputs)."""
    x = floats(x, "x")
    if x.ndim == 2:  # rows already: no reshapes (~0.3 us each way)
        return kernels().softmax_forward(x)
    return kernels().softmax_forward(_rows(x)).reshape(x.shape)


def softmax_backward(dy, y):
    dy, y = floats(dy, "dy"), floats(y, "y")
    if dy.shape != y.shape:
        raise ValueError(f"dy must have the shape of y {tuple(y.shape)}, got {tuple(dy.shape)}")
    if y.ndim == 2:
        return kernels().softmax_backward(dy, y)
    return kernels().softmax_backward(_rows(dy), _rows(y)).reshape(y.shape)


def softmax_cross_entropy(logits, labels):
    """Per-sample -log softmax(logits)[label] by log-sum-exp -> (loss (N,), probs (N, C))."""
    logits = floats(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {tuple(logits.shape)}")
    labels = labels_array(labels, logits.shape[0], logits.shape[1])
    return kernels().softmax_cross_entropy_forward(logits, labels)


def softmax_cross_entropy_backward(probs, labels, dloss=None):
    """dlogits = dloss[:, None] * (probs - onehot(labels)); dloss defaults to ones."""
    probs = floats(probs, "probs")
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {tuple(probs.shape)}")
    labels = labels_array(labels, probs.shape[0], probs.shape[1])
    xp = array_module(probs)
    dloss = xp.ones(probs.shape[0], probs.dtype) if dloss is None else floats(dloss, "dloss")
    if tuple(dloss.shape) != (probs.shape[0],):
        raise ValueError(f"dloss must have shape ({probs.shape[0]},), got {tuple(dloss.shape)}")
    return kernels().softmax_cross_entropy_backward(probs, labels, dloss)
