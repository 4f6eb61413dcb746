"""RandomContrast(factor, value_range=(0, 255), seed=None): during training each image's
contrast is scaled by a factor drawn uniformly from [1 - lower, 1 + upper] (factor a float
f: lower = upper = f; or a pair (lower, upper)): y = (x - m) * c + m with m the image's
per-channel mean over height and width, then clipped to value_range (Keras 3). Identity at
inference. This is the range Keras 3 documents; Keras 3.15's code draws from [1, 1 + f] for a
single float f (its factor bounds of (0, 1) clip the lower end to 0). Draws come from `fastconv.random.generator("augment")` or a private Generator of
`seed`.

>>> from fastconv import layers
>>> layers.RandomContrast(0.2).compute_output_shape((None, 8, 8, 3))
(None, 8, 8, 3)
"""
from ..autograd import ops
from ._preprocessing import generator, like
from .conv2d import check_nhwc
from .layer import Layer


def factor_pair(layer, factor, low_limit=0.0, high_limit=None):
    lo, hi = (factor, factor) if isinstance(factor, (int, float)) else tuple(factor)
    if lo < low_limit or hi < 0 or (high_limit is not None and (lo > high_limit or hi > high_limit)):
        raise ValueError(f"{type(layer).__name__}: factor must be a non-negative float or pair "
                         f"within range, got {factor!r}")
    return float(lo), float(hi)


class RandomContrast(Layer):
    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self._lower, self._upper = factor_pair(self, factor, high_limit=1.0)
        self.value_range = tuple(float(v) for v in value_range)
        self.seed, self._rng = seed, None

    def call(self, inputs, training=True):  # Keras 3: augments unless told otherwise
        if not training:
            return inputs
        if inputs.ndim != 3:  # one image (H, W, C) is accepted too, as in Keras 3
            check_nhwc(self, inputs.shape)
        shape = (inputs.shape[0], 1, 1, 1) if inputs.ndim == 4 else (1, 1, 1)  # one factor per image
        c = generator(self).uniform(1.0 - self._lower, 1.0 + self._upper, size=shape)
        m = ops.mean(inputs, axis=(-3, -2), keepdims=True)
        y = (inputs - m) * like(inputs, c) + m
        return ops.clip(y, *self.value_range)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range, "seed": self.seed}
