"""Reshape(target_shape): reshape every sample (the batch axis is kept); one entry may be -1.

>>> from fastconv import layers
>>> layers.Reshape((4, -1)).compute_output_shape((None, 2, 6))
(None, 4, 3)
"""
import numpy as np

from .layer import Layer


class Reshape(Layer):
    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target_shape = tuple(target_shape)
        if not all(isinstance(s, (int, np.integer)) and (s > 0 or s == -1) for s in target_shape) \
                or sum(s == -1 for s in target_shape) > 1:
            raise ValueError(f"target_shape must be positive ints with at most one -1, got {target_shape}")
        self.target_shape = tuple(int(s) for s in target_shape)

    def _resolve(self, sample_shape):
        size = int(np.prod(sample_shape))
        known = int(np.prod([s for s in self.target_shape if s != -1]))
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"{self.name}: cannot reshape samples of shape {tuple(sample_shape)} "
                                 f"({size} values) to {self.target_shape}")
            return tuple(size // known if s == -1 else s for s in self.target_shape)
        if size != known:
            raise ValueError(f"{self.name}: cannot reshape samples of shape {tuple(sample_shape)} "
                             f"({size} values) to {self.target_shape} ({known} values)")
        return self.target_shape

    def call(self, inputs):
        return inputs.reshape(inputs.shape[0], *self._resolve(inputs.shape[1:]))

    def compute_output_shape(self, input_shape):
        if any(s is None for s in input_shape[1:]):
            return (input_shape[0],) + tuple(None if s == -1 else s for s in self.target_shape)
        return (input_shape[0],) + self._resolve(input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}
