"""Batch normalisation over every axis but the last (channels), Keras semantics.

Training normalises with the biased batch variance and returns it (Keras stores the biased
variance in its moving average); inv_std = 1 / sqrt(var + eps) is returned so the backward
pass need not recompute it.
"""
import numpy as np

from ._checks import float_array, optional_vector, require_shape


def _channels(x, name):
    x = float_array(x, name, None, "(..., C)")
    if x.ndim < 1 or x.size == 0:
        raise ValueError(f"batch_norm: {name} must be (..., C) with at least one element, got shape {x.shape}")
    return x


def _vector(v, name, c, dtype):
    if v is None:
        raise TypeError(f"{name} must be a numpy.ndarray of shape ({c},), got None")
    return optional_vector(v, name, c, dtype)


def _reduce_axes(x):
    return tuple(range(x.ndim - 1))


def batch_norm_forward_train(x, gamma, beta, eps, relu=False):
    """(y, mean, var, inv_std); mean/var/inv_std have shape (C,). relu: y = max(y, 0)."""
    x = _channels(x, "x")
    c = x.shape[-1]
    gamma, beta = _vector(gamma, "gamma", c, x.dtype), _vector(beta, "beta", c, x.dtype)
    axes = _reduce_axes(x)
    mean = x.mean(axis=axes)
    var = np.square(x - mean).mean(axis=axes)
    inv_std = (1.0 / np.sqrt(var + x.dtype.type(eps))).astype(x.dtype)
    y = (x - mean) * inv_std * gamma + beta
    y = np.maximum(y, 0) if relu else y
    return np.ascontiguousarray(y, dtype=x.dtype), mean, var, inv_std


def batch_norm_forward_inference(x, gamma, beta, mean, var, eps, relu=False):
    x = _channels(x, "x")
    c = x.shape[-1]
    gamma, beta = _vector(gamma, "gamma", c, x.dtype), _vector(beta, "beta", c, x.dtype)
    mean, var = _vector(mean, "mean", c, x.dtype), _vector(var, "var", c, x.dtype)
    inv_std = 1.0 / np.sqrt(var + x.dtype.type(eps))
    y = (x - mean) * inv_std * gamma + beta
    return np.ascontiguousarray(np.maximum(y, 0) if relu else y, dtype=x.dtype)


def batch_norm_backward(dy, x, gamma, mean, inv_std, relu_beta=None):
    """(dx, dgamma, dbeta) of y = gamma * xhat + beta, xhat = (x - mean) * inv_std, where mean
    and inv_std are the batch statistics of x (so they depend on x too):

        dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))   (means over all but C)

    relu_beta: the forward ran with relu=True and this beta; dy first becomes dy * (y > 0).
    """
    dy = _channels(dy, "dy")
    x = float_array(x, "x", None, "(..., C)", dy.dtype)
    require_shape(x, "x", dy.shape)
    c = dy.shape[-1]
    gamma = _vector(gamma, "gamma", c, dy.dtype)
    mean, inv_std = _vector(mean, "mean", c, dy.dtype), _vector(inv_std, "inv_std", c, dy.dtype)
    axes = _reduce_axes(dy)
    xhat = (x - mean) * inv_std
    if relu_beta is not None:
        dy = dy * (xhat * gamma + _vector(relu_beta, "relu_beta", c, dy.dtype) > 0)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    dx = gamma * inv_std * (dy - dy.mean(axis=axes) - xhat * (dy * xhat).mean(axis=axes))
    return np.ascontiguousarray(dx, dtype=dy.dtype), dgamma, dbeta
