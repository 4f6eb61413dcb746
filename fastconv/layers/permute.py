"""Permute(dims): reorder the non-batch axes; `dims` numbers them from 1, as in Keras.

>>> from fastconv import layers
>>> layers.Permute((2, 1)).compute_output_shape((None, 3, 5))
(None, 5, 3)
"""
from .layer import Layer


class Permute(Layer):
    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        try:
            dims = tuple(int(d) for d in dims)
        except (TypeError, ValueError):
            raise ValueError(f"Permute: dims must be a tuple of ints, got {dims!r}") from None
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Permute: dims must be a permutation of 1..{len(dims)} (axis 0, the batch, "
                             f"is not permuted), got {dims}")
        self.dims = dims

    def _check(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"{self.name}: dims {self.dims} permute {len(self.dims)} axes but the input "
                             f"of shape {tuple(input_shape)} has {len(input_shape) - 1} besides the batch")

    def call(self, inputs):
        self._check(inputs.shape)
        return inputs.transpose((0,) + self.dims)

    def compute_output_shape(self, input_shape):
        self._check(input_shape)
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}
