"""RandomBrightness(factor, value_range=(0, 255), seed=None): during training each image is
shifted by delta = u * (max - min) of value_range, u drawn uniformly from [-|f|, |f|] (factor
a float f) or [lower, upper] (a pair, sorted as Keras does), then clipped to value_range
(Keras 3). Factors lie in [-1, 1]. Identity at inference. Draws come from `fastconv.random.generator("augment")` or a
private Generator of `seed`.

>>> from fastconv import layers
>>> layers.RandomBrightness(0.2).compute_output_shape((None, 8, 8, 3))
(None, 8, 8, 3)
"""
from ..autograd import ops
from ._preprocessing import generator, keras_factor, like
from .layer import Layer


class RandomBrightness(Layer):
    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self._lower, self._upper = keras_factor(self, factor, "factor")  # (-|f|, |f|), a pair sorted
        self.value_range = tuple(float(v) for v in value_range)
        if len(self.value_range) != 2 or self.value_range[0] >= self.value_range[1]:
            raise ValueError(f"RandomBrightness: value_range must be (min, max) with min < max, got {value_range!r}")
        self.seed, self._rng = seed, None

    def call(self, inputs, training=True):  # Keras 3: augments unless told otherwise
        if not training:
            return inputs
        if inputs.ndim not in (3, 4):
            raise ValueError(f"RandomBrightness expects NHWC input (N, H, W, C) or one image (H, W, C), "
                             f"got shape {tuple(inputs.shape)}")
        shape = (inputs.shape[0], 1, 1, 1) if inputs.ndim == 4 else (1, 1, 1)  # one shift per image
        span = self.value_range[1] - self.value_range[0]
        delta = generator(self).uniform(self._lower, self._upper, size=shape) * span
        return ops.clip(inputs + like(inputs, delta), *self.value_range)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range, "seed": self.seed}
