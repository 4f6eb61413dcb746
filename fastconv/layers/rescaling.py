"""Rescaling(scale, offset=0.0): y = x * scale + offset (e.g. 1/255 to map pixels to [0, 1]).
`scale` and `offset` may be scalars or arrays broadcasting against the input's trailing axes.

>>> import numpy as np
>>> from fastconv import layers
>>> layers.Rescaling(1 / 255.0)(np.array([[0.0, 255.0]], np.float32)).numpy()
array([[0., 1.]], dtype=float32)
"""
import numpy as np

from ._preprocessing import like
from .layer import Layer


class Rescaling(Layer):
    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset

    @staticmethod
    def _plain(v):
        return float(v) if np.ndim(v) == 0 else v

    def call(self, inputs):
        scale, offset = self._plain(self.scale), self._plain(self.offset)
        y = inputs * (scale if isinstance(scale, float) else like(inputs, scale))
        if isinstance(offset, float) and offset == 0.0:
            return y
        return y + (offset if isinstance(offset, float) else like(inputs, offset))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        def ser(v):
            return float(v) if np.ndim(v) == 0 else np.asarray(v).tolist()
        return {**super().get_config(), "scale": ser(self.scale), "offset": ser(self.offset)}
