"""Row softmax and the fused softmax cross-entropy loss, both max-shifted for stability."""
import numpy as np

from ._checks import float_array, labels_array, require_shape


def _rows(a, name):
    a = float_array(a, name, 2, "(N, C)")
    if a.shape[1] < 1:
        raise ValueError(f"softmax: {name} must have at least one class, got shape {a.shape}")
    return a


def _shifted(x):
    # exp of x - max(x) is at most 1: no overflow however large the logits.
    return x - x.max(axis=1, keepdims=True)


def softmax_forward(x):
    x = _rows(x, "x")
    e = np.exp(_shifted(x))
    return np.ascontiguousarray(e / e.sum(axis=1, keepdims=True), dtype=x.dtype)


def softmax_backward(dy, y):
    """dx = y * (dy - sum(dy * y)) per row: the Jacobian diag(y) - y y^T applied to dy."""
    dy = _rows(dy, "dy")
    y = float_array(y, "y", 2, "(N, C)", dy.dtype)
    require_shape(y, "y", dy.shape)
    return np.ascontiguousarray(y * (dy - (dy * y).sum(axis=1, keepdims=True)), dtype=dy.dtype)


def softmax_cross_entropy_forward(logits, labels):
    """(loss (N,), probs (N, C)) with loss[i] = logsumexp(logits[i]) - logits[i, labels[i]]."""
    logits = _rows(logits, "logits")
    n, c = logits.shape
    labels = labels_array(labels, n, c)
    s = _shifted(logits)
    log_z = np.log(np.exp(s).sum(axis=1))
    loss = log_z - s[np.arange(n), labels]
    probs = np.exp(s - log_z[:, None])
    return np.ascontiguousarray(loss, dtype=logits.dtype), np.ascontiguousarray(probs, dtype=logits.dtype)


def softmax_cross_entropy_backward(probs, labels, dloss):
    """dlogits = dloss[:, None] * (probs - onehot(labels))."""
    probs = _rows(probs, "probs")
    n, c = probs.shape
    labels = labels_array(labels, n, c)
    dloss = float_array(dloss, "dloss", 1, "(N,)", probs.dtype)
    require_shape(dloss, "dloss", (n,))
    onehot = np.zeros_like(probs)
    onehot[np.arange(n), labels] = 1
    return np.ascontiguousarray(dloss[:, None] * (probs - onehot), dtype=probs.dtype)
