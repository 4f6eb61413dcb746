"""Dense: y = activation(x @ kernel + bias) on the last axis (Keras semantics: inputs of rank
> 2 are treated as a batch of vectors along every axis but the last).

>>> from fastconv import layers
>>> d = layers.Dense(520); _ = d.build((None, 784)); d.count_params()
408200
"""
from ..autograd import ops
from . import activation as act
from .layer import Layer


class Dense(Layer):
    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}")
        self.units = units
        self.activation = act.resolve(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"{self.name}: Dense needs inputs of rank >= 2 with a known last axis, "
                             f"got shape {tuple(input_shape)}")
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.bias = (self.add_weight("bias", (self.units,), self.bias_initializer,
                                     regularizer=self.bias_regularizer) if self.use_bias else None)

    def call(self, inputs):
        k = self.kernel.shape[0]
        if inputs.shape[-1] != k:
            raise ValueError(f"{self.name}: expected inputs with last axis {k} (shape (None, ..., {k})), "
                             f"got shape {tuple(inputs.shape)}")
        x = inputs if inputs.ndim == 2 else inputs.reshape(-1, k)
        y = act.apply(ops.dense(x, self.kernel), self.bias, self.activation)
        return y if inputs.ndim == 2 else y.reshape(*inputs.shape[:-1], self.units)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": act.serialize(self.activation),
                "use_bias": self.use_bias}
