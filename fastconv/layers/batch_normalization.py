"""BatchNormalization with Keras semantics: momentum 0.99, epsilon 1e-3, biased batch variance
stored in moving_variance, moving = moving*momentum + batch*(1-momentum). gamma/beta are
trainable, moving_mean/moving_variance are not. Batch statistics are used only when called
with training=True on a trainable layer: a frozen layer (trainable=False) runs in inference
mode, as in Keras 3 (the fine-tuning rule).

>>> from fastconv import layers
>>> bn = layers.BatchNormalization(); _ = bn.build((None, 64))
>>> bn.count_params(), len(bn.non_trainable_weights)
(256, 2)
"""
from ..autograd import ops
from .. import regularizers
from .layer import Layer


class BatchNormalization(Layer):
    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise TypeError(f"axis must be an int, got {axis!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self._inits = (gamma_initializer, beta_initializer, moving_mean_initializer, moving_variance_initializer)
        self._regs = (regularizers.get(gamma_regularizer), regularizers.get(beta_regularizer))

    def build(self, input_shape):
        ndim = len(input_shape)
        axis = self.axis % ndim if -ndim <= self.axis < ndim else None
        if axis is None or axis == 0 or input_shape[axis] is None:
            raise ValueError(f"{self.name}: axis={self.axis} must name a known, non-batch axis of the "
                             f"input shape {tuple(input_shape)}")
        self._axis, self._ndim = axis, ndim
        c = (input_shape[axis],)
        self.gamma = self.add_weight("gamma", c, self._inits[0], regularizer=self._regs[0]) if self.scale else None
        self.beta = self.add_weight("beta", c, self._inits[1], regularizer=self._regs[1]) if self.center else None
        self.moving_mean = self.add_weight("moving_mean", c, self._inits[2], trainable=False)
        self.moving_variance = self.add_weight("moving_variance", c, self._inits[3], trainable=False)

    def folded_into(self, kernel, bias):
        """(kernel', bias') of a conv whose output this layer normalises with its moving
        statistics: y = conv(x, kernel) + bias, then (y - mean) * s + beta with
        s = gamma / sqrt(var + eps), equals conv(x, kernel * s) + (bias - mean) * s + beta.
        Autograd ops, so gradients still reach the conv and the gamma/beta weights."""
        s = 1.0 / ops.sqrt(self.moving_variance.data + self.epsilon)
        if self.gamma is not None:
            s = self.gamma * s
        shift = (-self.moving_mean.data) * s if bias is None else (bias - self.moving_mean.data) * s
        if self.beta is not None:
            shift = shift + self.beta
        return kernel * s, shift

    def call(self, inputs, training=None, _activation=None):
        if inputs.ndim != self._ndim or inputs.shape[self._axis] != self.moving_mean.shape[0]:
            raise ValueError(f"{self.name}: expected rank {self._ndim} inputs with {self.moving_mean.shape[0]} "
                             f"features on axis {self._axis}, got shape {tuple(inputs.shape)}")
        training = bool(training) and self.trainable
        last = self._axis == self._ndim - 1
        # The kernels normalise the last axis; any other feature axis is moved there and back.
        perm = tuple(i for i in range(self._ndim) if i != self._axis) + (self._axis,)
        x = inputs if last else inputs.transpose(*perm)
        y = self._normalize(x, training, _activation)
        if last:
            return y
        inverse = [0] * self._ndim
        for i, p in enumerate(perm):
            inverse[p] = i
        return y.transpose(*inverse)

    def _normalize(self, x, training, _activation):
        """x with the features on the last axis. _activation: a fused BatchNormalization -> ReLU
        chain (engine/fusion.py)."""
        return ops.batch_norm(x, self.gamma, self.beta, self.moving_mean, self.moving_variance,
                              training, momentum=self.momentum, epsilon=self.epsilon,
                              relu=_activation == "relu")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale}
