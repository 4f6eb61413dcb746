"""Fused bias + activation: y = act(x + b) over the last (channel) axis.

The backward pass takes the forward *output* y, which is all each derivative needs
(relu' = y > 0, sigmoid' = y (1 - y), tanh' = 1 - y^2), so z = x + b need not be kept.
"""
import numpy as np

from ._checks import check_activation, float_array, optional_vector, require_shape


def _sigmoid(z):
    # exp of a non-positive number only: no overflow for large |z|.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype)


_FORWARD = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, z.dtype.type(0)),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
}

_DERIVATIVE_FROM_OUTPUT = {
    "linear": lambda y: np.ones_like(y),
    "relu": lambda y: (y > 0).astype(y.dtype),
    "sigmoid": lambda y: y * (1 - y),
    "tanh": lambda y: 1 - y * y,
}


def _channels(a, name):
    a = float_array(a, name, None, "(..., C)")
    if a.ndim < 1:
        raise ValueError(f"bias_act: {name} must be (..., C), got a scalar")
    return a


def bias_act_forward(x, b, activation):
    x = _channels(x, "x")
    check_activation(activation)
    b = optional_vector(b, "b", x.shape[-1], x.dtype)
    z = x if b is None else x + b
    return np.ascontiguousarray(_FORWARD[activation](z), dtype=x.dtype)


def add_act_forward(a, b, activation):
    """y = activation(a + b) for a and b of one shape."""
    a = float_array(a, "a", None, "(...)")
    b = float_array(b, "b", None, "(...)", a.dtype)
    require_shape(b, "b", a.shape)
    check_activation(activation)
    return np.ascontiguousarray(_FORWARD[activation](a + b), dtype=a.dtype)


def bias_act_backward(dy, y, activation, with_bias):
    """(dz, db or None): dz = dy * act'(z), db = dz summed over every axis but the last."""
    dy = _channels(dy, "dy")
    y = float_array(y, "y", None, "(..., C)", dy.dtype)
    require_shape(y, "y", dy.shape)
    check_activation(activation)
    dz = np.ascontiguousarray(dy * _DERIVATIVE_FROM_OUTPUT[activation](y), dtype=dy.dtype)
    db = dz.sum(axis=tuple(range(dz.ndim - 1))) if with_bias else None
    return dz, db
