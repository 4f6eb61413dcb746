"""Dropout(rate, noise_shape=None, seed=None): during training zero each unit with
probability `rate` and scale the rest by 1/(1-rate) (inverted dropout, as Keras); identity
at inference. Masks come from `fastconv.random.generator("dropout")`, so `fastconv.set_seed`
repeats them, or from a private Generator when `seed` is given. On the GPU the masks are
drawn there, from `fastconv.random.device_generator("dropout")` (or a CuPy Generator of
`seed`): repeatable, but not the same masks as on the CPU. noise_shape (Keras's): the mask's
shape, None entries taken from the input, 1 sharing one draw along that axis, so
noise_shape=(None, 1, 1, 1) drops whole samples (EfficientNet's stochastic depth).

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
        if noise_shape is not None and (
                not isinstance(noise_shape, (tuple, list))
                or any(d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1)
                       for d in noise_shape)):
            raise ValueError(f"noise_shape must be a tuple of positive ints or None, got {noise_shape!r}")
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.rate, self.seed = float(rate), seed
        self._rng = self._device_rng = None  # made on first use (random.layer_generator)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        return ops.dropout(inputs, self.rate, self._generator(inputs), True, self._mask_shape(inputs.shape))

    def _mask_shape(self, shape):
        if self.noise_shape is None:
            return None
        if len(self.noise_shape) != len(shape):
            raise ValueError(f"{self.name}: noise_shape {self.noise_shape} has rank {len(self.noise_shape)}, "
                             f"the input shape {tuple(shape)} rank {len(shape)}")
        mask = tuple(s if d is None else d for d, s in zip(self.noise_shape, shape))
        if any(d not in (1, s) for d, s in zip(mask, shape)):
            raise ValueError(f"{self.name}: noise_shape {self.noise_shape} does not broadcast to the input "
                             f"shape {tuple(shape)} (each entry must be None, 1 or the input's size)")
        return mask

    def _generator(self, inputs):
        return random.layer_generator(self, "dropout", is_device_array(getattr(inputs, "data", inputs)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape)}
