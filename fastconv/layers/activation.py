"""Activation, ReLU and Softmax layers, and the activation lookup the other layers share.

'relu', 'sigmoid', 'tanh' and 'linear' (or None) fuse with a bias into one
`ops.bias_activation` kernel pass, whether given as strings or as the fastconv.activations
functions; every other name of fastconv.activations ('gelu', 'elu', ...) and any callable
runs after it, composed from differentiable ops.

>>> import numpy as np
>>> from fastconv import layers
>>> layers.Activation("relu")(np.array([[-1.0, 2.0]], np.float32)).numpy()
array([[0., 2.]], dtype=float32)
"""
from .. import activations
from ..autograd import ops
from .layer import Layer

FUSED = ("linear", "relu", "sigmoid", "tanh")


def resolve(activation):
    """activation name | None | callable -> canonical name (str) or the callable itself.

    fastconv.activations' own functions become their names, so activation=activations.relu
    takes the fused kernel path exactly as activation="relu" does."""
    if activation is None:
        return "linear"
    if callable(activation):
        return activations.name_of(activation) or activation
    if isinstance(activation, str):
        return activations.get(activation).__name__  # unknown: ValueError naming the nearest
    raise ValueError(f"unknown activation {activation!r}; expected a name of fastconv.activations, "
                     "None or a callable")


def fusable(activation):
    """True for the activations the native kernels apply in place (relu, sigmoid, tanh, linear)."""
    return isinstance(activation, str) and activation in FUSED


def apply(y, bias, activation):
    """activation(y + bias) in as few passes as possible (`activation` from resolve)."""
    if isinstance(activation, str) and activation in FUSED:
        if bias is None and activation == "linear":
            return y
        return ops.bias_activation(y, bias, activation)
    if bias is not None:
        y = ops.bias_activation(y, bias, "linear")
    return activations.get(activation)(y)


def serialize(activation):
    return activation if isinstance(activation, str) else getattr(activation, "__name__", repr(activation))


class Activation(Layer):
    """Applies an activation: a name of fastconv.activations ('relu', 'gelu', ...) or a callable."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = resolve(activation)

    def call(self, inputs):
        return apply(inputs, None, self.activation)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "activation": serialize(self.activation)}


class ReLU(Layer):
    """Keras ReLU: f(x) = max_value if x >= max_value; x if threshold <= x; else
    negative_slope * (x - threshold). With the defaults this is the fused relu kernel."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0:
            raise ValueError(f"max_value must be >= 0 or None, got {max_value}")
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        self.max_value, self.negative_slope, self.threshold = max_value, float(negative_slope), float(threshold)

    def call(self, inputs):
        x = inputs
        if self.negative_slope == 0.0 and self.threshold == 0.0:
            if self.max_value is not None:  # ReLU6 and kin: one pass
                return ops.capped_relu(x, self.max_value)
            y = ops.relu(x)
        else:
            y = ops.where(x.data >= self.threshold, x, (x - self.threshold) * self.negative_slope)
        if self.max_value is not None:
            y = ops.minimum(y, float(self.max_value))
        return y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class Softmax(Layer):
    """Softmax along `axis` (default the last)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, inputs):
        return ops.softmax(inputs, axis=self.axis)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
