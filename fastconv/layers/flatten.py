"""Flatten: (N, d1, d2, ...) -> (N, d1*d2*...), row-major (NHWC order, as Keras channels_last).

>>> from fastconv import layers
>>> layers.Flatten().compute_output_shape((None, 5, 5, 16))
(None, 400)
"""
import numpy as np

from .layer import Layer


class Flatten(Layer):
    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' is supported, got {data_format!r}")

    def call(self, inputs):
        return inputs.reshape(inputs.shape[0], -1)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if any(s is None for s in rest) else int(np.prod(rest)))
