"""GaussianNoise(stddev, seed=None): adds zero-mean normal noise of standard deviation
`stddev` during training; identity at inference. Noise comes from
`fastconv.random.generator("noise")` (a private Generator when `seed` is given); for device
inputs it is drawn on the device (`fastconv.random.device_generator("noise")`), repeatable
but not the host's numbers, so that no full-size array crosses to the GPU each step.

>>> import numpy as np
>>> from fastconv import layers
>>> layers.GaussianNoise(1.0)(np.zeros((1, 2), np.float32)).numpy()  # inference: identity
array([[0., 0.]], dtype=float32)
"""

from .. import random
from ..autograd import Tensor
from ..functional import is_device_array
from .layer import Layer


class GaussianNoise(Layer):
    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        if stddev < 0:
            raise ValueError(f"stddev must be >= 0, got {stddev!r}")
        self.stddev, self.seed = float(stddev), seed
        self._rng = self._device_rng = None

    def call(self, inputs, training=None):
        if not training or self.stddev == 0.0:
            return inputs
        noise = self._generator(inputs).standard_normal(inputs.shape, dtype=inputs.dtype)
        return inputs + Tensor(noise * inputs.dtype.type(self.stddev))

    def _generator(self, inputs):
        return random.layer_generator(self, "noise", is_device_array(inputs.data))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}
