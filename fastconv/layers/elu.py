"""ELU(alpha=1.0): x for x > 0, alpha * (exp(x) - 1) otherwise.

>>> import numpy as np
>>> from fastconv import layers
>>> layers.ELU()(np.array([[0.0, 2.0]], np.float32)).numpy()
array([[0., 2.]], dtype=float32)
"""
from ..autograd import ops
from ._preprocessing import like
from .layer import Layer


class ELU(Layer):
    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, inputs):
        # exp of min(x, 0), not of x: exp of a large positive x would overflow to inf in the
        # branch where() discards, and its backward (0 * inf) would turn the gradient to NaN.
        # The zero is a device constant: a host scalar would meet device arrays in maximum().
        neg = (ops.exp(ops.minimum(inputs, like(inputs, 0.0))) - 1.0) * self.alpha
        return ops.where(inputs.data > 0, inputs, neg)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}
