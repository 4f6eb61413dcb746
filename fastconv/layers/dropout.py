"""Dropout(rate, noise_shape=None, seed=None): during training zero each unit with
probability `rate` and scale the rest by 1/(1-rate) (inverted dropout, as Keras); identity
at inference. Masks come from `fastconv.random.generator("dropout")`, so `fastconv.set_seed`
repeats them, or from a private Generator when `seed` is given. On the GPU the masks are
drawn there, from `fastconv.random.device_generator("dropout")` (or a CuPy Generator of
`seed`): repeatable, but not the same masks as on the CPU.

>>> import numpy as np
>>> from fastconv import layers
>>> layers.Dropout(0.5)(np.ones((1, 4), np.float32)).numpy()  # training defaults to False
array([[1., 1., 1., 1.]], dtype=float32)
"""

from .. import random
from ..autograd import ops
from ..functional import is_device_array
from .layer import Layer


class Dropout(Layer):
    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate!r}")
        if noise_shape is not None:
            raise NotImplementedError("Dropout(noise_shape=...) is not supported")
        self.rate, self.seed = float(rate), seed
        self._rng = self._device_rng = None  # made on first use (random.layer_generator)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        return ops.dropout(inputs, self.rate, self._generator(inputs), True)

    def _generator(self, inputs):
        return random.layer_generator(self, "dropout", is_device_array(getattr(inputs, "data", inputs)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
