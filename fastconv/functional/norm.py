"""Batch normalisation on arrays (channels last), any backend.

Keras semantics: normalise with the biased batch variance; `var` returned is biased.
"""
from ._args import floats, kernels


def _check(x, name, c):
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and a channel axis (..., C), got shape {tuple(x.shape)}")
    shape = (c,)
    for arr, arg in name:
        if arr is not None and arr.shape != shape:
            raise ValueError(f"{arg} must have shape ({c},) to match x {tuple(x.shape)}, got {tuple(arr.shape)}")


def batch_norm_train(x, gamma, beta, epsilon=1e-3, relu=False):
    """Training forward with batch statistics -> (y, mean, var, inv_std); relu=True applies
    max(y, 0) in the same pass (a fused BatchNormalization -> ReLU)."""
    x, gamma, beta = floats(x, "x"), floats(gamma, "gamma"), floats(beta, "beta")
    _check(x, [(gamma, "gamma"), (beta, "beta")], x.shape[-1])
    if relu:
        return kernels().batch_norm_forward_train(x, gamma, beta, float(epsilon), True)
    return kernels().batch_norm_forward_train(x, gamma, beta, float(epsilon))


def batch_norm_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3, relu=False):
    """Inference forward with moving statistics (relu: max(y, 0) in the same pass)."""
    x, gamma, beta = floats(x, "x"), floats(gamma, "gamma"), floats(beta, "beta")
    mean, var = floats(moving_mean, "moving_mean"), floats(moving_var, "moving_var")
    _check(x, [(gamma, "gamma"), (beta, "beta"), (mean, "moving_mean"), (var, "moving_var")], x.shape[-1])
    if relu:
        return kernels().batch_norm_forward_inference(x, gamma, beta, mean, var, float(epsilon), True)
    return kernels().batch_norm_forward_inference(x, gamma, beta, mean, var, float(epsilon))


def batch_norm_backward(dy, x, gamma, mean, inv_std, relu_beta=None):
    """Gradients of the training forward -> (dx, dgamma, dbeta). relu_beta: the forward's beta
    when it ran with relu=True (dy is masked by the sign of the recomputed output)."""
    dy, x, gamma = floats(dy, "dy"), floats(x, "x"), floats(gamma, "gamma")
    mean, inv_std = floats(mean, "mean"), floats(inv_std, "inv_std")
    _check(x, [(gamma, "gamma"), (mean, "mean"), (inv_std, "inv_std")], x.shape[-1])
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x {tuple(x.shape)}, got {tuple(dy.shape)}")
    if relu_beta is not None:
        relu_beta = floats(relu_beta, "relu_beta")
        _check(x, [(relu_beta, "relu_beta")], x.shape[-1])
        return kernels().batch_norm_backward(dy, x, gamma, mean, inv_std, relu_beta)
    return kernels().batch_norm_backward(dy, x, gamma, mean, inv_std)
