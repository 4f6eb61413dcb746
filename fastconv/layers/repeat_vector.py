"""RepeatVector(n): (batch, features) -> (batch, n, features), the vector repeated n times.

>>> from fastconv import layers
>>> layers.RepeatVector(3).compute_output_shape((None, 4))
(None, 3, 4)
"""
import numbers

from ..autograd import ops
from .layer import Layer


class RepeatVector(Layer):
    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
            raise ValueError(f"RepeatVector: n must be an int >= 1, got {n!r}")
        self.n = int(n)

    def _check(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{self.name}: expects a 2-D input (batch, features), got shape {tuple(input_shape)}")

    def call(self, inputs):
        self._check(inputs.shape)
        row = inputs.reshape(inputs.shape[0], 1, inputs.shape[1])
        # concatenate's backward sums the n copies' gradients into the one input row.
        return row if self.n == 1 else ops.concatenate([row] * self.n, axis=1)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return (input_shape[0], self.n, input_shape[1])
