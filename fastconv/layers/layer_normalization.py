"""LayerNormalization(axis=-1, epsilon=1e-3, center=True, scale=True, ...): each sample is
normalised over `axis` (an int or a tuple of ints): y = (x - mean) / sqrt(var + epsilon) *
gamma + beta, with the biased variance (Keras). gamma and beta have the shape of the input
along `axis`: 2 * C parameters with the defaults. Composed from autograd ops (mean, sub,
mul, sqrt, div), so its gradient is theirs on every backend.

>>> from fastconv import layers
>>> ln = layers.LayerNormalization(); _ = ln.build((None, 4, 4, 8)); ln.count_params()
16
"""
from ..autograd import ops
from .layer import Layer


class LayerNormalization(Layer):
    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if rms_scaling:
            raise NotImplementedError("LayerNormalization(rms_scaling=True) is not supported")
        self.axis = axis if isinstance(axis, int) else tuple(axis)
        self.epsilon, self.center, self.scale = float(epsilon), bool(center), bool(scale)
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self.beta_regularizer, self.gamma_regularizer = beta_regularizer, gamma_regularizer

    def build(self, input_shape):
        ndim = len(input_shape)
        axes = (self.axis,) if isinstance(self.axis, int) else self.axis
        if any(not -ndim <= a < ndim for a in axes):
            raise ValueError(f"{self.name}: axis {self.axis} out of range for input shape {tuple(input_shape)}")
        self._axes = tuple(sorted(a % ndim for a in axes))
        if 0 in self._axes:
            raise ValueError(f"{self.name}: LayerNormalization cannot normalise over the batch axis")
        shape = tuple(input_shape[a] for a in self._axes)
        if None in shape:
            raise ValueError(f"{self.name}: sizes on axis {self.axis} must be known, input shape {tuple(input_shape)}")
        # Stored with the normalised axes' shape (Keras), broadcast with 1s elsewhere in call.
        self._bshape = tuple(input_shape[a] if a in self._axes else 1 for a in range(ndim))[1:]
        self.gamma = (self.add_weight("gamma", shape, self.gamma_initializer, regularizer=self.gamma_regularizer)
                      if self.scale else None)
        self.beta = (self.add_weight("beta", shape, self.beta_initializer, regularizer=self.beta_regularizer)
                     if self.center else None)

    def call(self, inputs):
        mean = ops.mean(inputs, axis=self._axes, keepdims=True)
        d = inputs - mean
        var = ops.mean(d * d, axis=self._axes, keepdims=True)
        y = d / ops.sqrt(var + self.epsilon)
        if self.gamma is not None:
            y = y * ops.reshape(self.gamma, self._bshape)
        if self.beta is not None:
            y = y + ops.reshape(self.beta, self._bshape)
        return y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}
