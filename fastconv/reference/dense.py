"""Fully connected layer: y = x @ w + b with x (N, K), w (K, M), b (M,)."""
import numpy as np

from ._checks import check_activation, float_array, optional_vector, require_shape
from .activation import bias_act_forward


def dense_forward(x, w, b, activation="linear"):
    """activation(x @ w + b) (the activation as in bias_act_forward)."""
    check_activation(activation)
    x = float_array(x, "x", 2, "(N, K)")
    w = float_array(w, "w", 2, "(K, M)", x.dtype)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"dense: w must have shape ({x.shape[1]}, M) to match x {x.shape}, got {w.shape}")
    b = optional_vector(b, "b", w.shape[1], x.dtype)
    y = x @ w
    if b is not None:
        y = y + b
    y = np.ascontiguousarray(y, dtype=x.dtype)
    return y if activation == "linear" else bias_act_forward(y, None, activation)


def dense_backward(dy, x, w):
    """(dx (N, K), dw (K, M), db (M,)) for y = x @ w + b."""
    dy = float_array(dy, "dy", 2, "(N, M)")
    x = float_array(x, "x", 2, "(N, K)", dy.dtype)
    w = float_array(w, "w", 2, "(K, M)", dy.dtype)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"dense: w must have shape ({x.shape[1]}, M) to match x {x.shape}, got {w.shape}")
    require_shape(dy, "dy", (x.shape[0], w.shape[1]))
    dx = np.ascontiguousarray(dy @ w.T)
    dw = np.ascontiguousarray(x.T @ dy)
    return dx, dw, dy.sum(axis=0)
