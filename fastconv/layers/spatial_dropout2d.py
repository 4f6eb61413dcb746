"""SpatialDropout2D(rate, seed=None): dropout of whole feature maps. During training each
(sample, channel) pair of an NHWC batch is zeroed with probability `rate` and the kept ones
scaled by 1 / (1 - rate), the same for every pixel (neighbouring pixels are correlated, so
dropping single pixels would regularise little); identity at inference. The N x C mask is
drawn on the host from `fastconv.random.generator("dropout")` (or a private Generator of
`seed`) and sent to the input's device: the same masks on every backend.

>>> from fastconv import layers
>>> layers.SpatialDropout2D(0.2).compute_output_shape((None, 8, 8, 3))
(None, 8, 8, 3)
"""

from .. import random
from ._preprocessing import like
from .conv2d import check_nhwc
from .layer import Layer


class SpatialDropout2D(Layer):
    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' is supported, got {data_format!r}")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate!r}")
        self.rate, self.seed, self._rng = float(rate), seed, None

    def call(self, inputs, training=None):
        check_nhwc(self, inputs.shape)
        if not training or self.rate == 0.0:
            return inputs
        keep = random.layer_generator(self, "dropout").random((inputs.shape[0], 1, 1, inputs.shape[3])) >= self.rate
        # A multiply, not a where(): a dropped NaN stays NaN (0 * NaN), as Dropout's does.
        return inputs * like(inputs, keep / (1.0 - self.rate))

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
