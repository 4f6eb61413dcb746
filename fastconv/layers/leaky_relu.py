"""LeakyReLU(negative_slope=0.3): x for x >= 0, negative_slope * x below (Keras 3's default
slope 0.3). Keras 2's `alpha=` is accepted with a DeprecationWarning.

>>> import numpy as np
>>> from fastconv import layers
>>> layers.LeakyReLU()(np.array([[-1.0, 2.0]], np.float32)).numpy()
array([[-0.3,  2. ]], dtype=float32)
"""
import warnings

from ..autograd import ops
from .layer import Layer


class LeakyReLU(Layer):
    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            warnings.warn("LeakyReLU(alpha=...) is Keras 2's spelling; use negative_slope=",
                          DeprecationWarning, stacklevel=2)
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope is None or negative_slope < 0:
            raise ValueError(f"LeakyReLU: negative_slope must be a float >= 0, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def call(self, inputs):
        # where() on the comparison: NaN fails it and comes out as slope * NaN = NaN.
        return ops.where(inputs.data >= 0, inputs, inputs * self.negative_slope)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}
