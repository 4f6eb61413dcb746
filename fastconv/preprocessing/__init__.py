"""Keras-path preprocessing: ``preprocessing.image`` (loaded on first use) and the Keras-style
random preprocessing layers, active only in training (identity otherwise).

``RandomFlip``, ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation`` take NHWC batches
and draw one transform per image from ``fastconv.random.generator("augment")`` (or a private
Generator when `seed` is given), with Keras's argument conventions:

- RandomRotation(factor): angle uniform in ``[-factor, factor] * 2*pi`` (a pair for (lo, hi)),
  positive = counter-clockwise.
- RandomZoom(height_factor, width_factor=None): zoom uniform in ``[-f, f]``; positive zooms out
  (the picture shrinks by ``1 + f``). One factor per image is used for both axes (Keras's
  default when `width_factor` is None); a different `width_factor` is not supported.
- RandomTranslation(height_factor, width_factor): shift uniform in ``[-f, f]`` times the image
  height/width, in (sub-)pixels, bilinear.
Pixels sampled from outside the image get `fill_value` (Keras's ``fill_mode="constant"``).
They belong at the model input: their output carries no gradient back to their input.

>>> import numpy as np
>>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
>>> bool((RandomRotation(0.2, seed=0)(x).numpy() == x).all())   # inference: unchanged
True
"""
import numpy as np

from ..data import augment
from .. import random as _random
from .._missing import module_getattr
from ..autograd import Tensor
from ..layers import Layer


def _pair(f, name):
    lo, hi = (-f, f) if np.isscalar(f) else tuple(f)
    if lo > hi:
        raise ValueError(f"{name} range must be (low, high) with low <= high, got {f!r}")
    return float(lo), float(hi)


class _RandomLayer(Layer):
    def __init__(self, seed=None, fill_value=0.0, **kwargs):
        kwargs["trainable"] = False  # also when a config (which records trainable) rebuilds it
        super().__init__(**kwargs)
        self.seed, self.fill_value = seed, float(fill_value)
        self._rng = None if seed is None else np.random.default_rng(seed)

    @property
    def rng(self):
        # looked up per call: set_seed replaces the stream's Generator
        return self._rng if self._rng is not None else _random.generator("augment")

    def call(self, inputs, training=None):
        if not training:
            return inputs
        x = inputs.data if isinstance(inputs, Tensor) else np.asarray(inputs)
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects NHWC input (N, H, W, C), got shape {x.shape}")
        return Tensor(self.transform(x, self.rng))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "fill_value": self.fill_value}


class RandomFlip(_RandomLayer):
    def __init__(self, mode="horizontal_and_vertical", seed=None, **kwargs):
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(f"mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical', got {mode!r}")
        super().__init__(seed=seed, **kwargs)
        self.mode = mode

    def transform(self, x, rng):
        return augment.random_flip(x, rng, horizontal="horizontal" in self.mode,
                                   vertical="vertical" in self.mode)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class RandomRotation(_RandomLayer):
    def __init__(self, factor, fill_value=0.0, seed=None, **kwargs):
        super().__init__(seed=seed, fill_value=fill_value, **kwargs)
        self.factor = factor
        self._range = _pair(factor, "factor")

    def transform(self, x, rng):
        theta = rng.uniform(*self._range, len(x)) * 2 * np.pi
        return augment.affine(x, theta, np.ones(len(x)), None, self.fill_value)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class RandomZoom(_RandomLayer):
    def __init__(self, height_factor, width_factor=None, fill_value=0.0, seed=None, **kwargs):
        super().__init__(seed=seed, fill_value=fill_value, **kwargs)
        if width_factor is not None and width_factor != height_factor:
            raise NotImplementedError("RandomZoom with a width_factor different from height_factor")
        self.height_factor = height_factor
        self._range = _pair(height_factor, "height_factor")
        if self._range[0] <= -1:
            raise ValueError(f"height_factor must stay above -1 (a zoom-in of 100%), got {height_factor!r}")

    def transform(self, x, rng):
        z = rng.uniform(*self._range, len(x))
        return augment.affine(x, np.zeros(len(x)), 1.0 / (1.0 + z), None, self.fill_value)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor}


class RandomTranslation(_RandomLayer):
    def __init__(self, height_factor, width_factor, fill_value=0.0, seed=None, **kwargs):
        super().__init__(seed=seed, fill_value=fill_value, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._hr, self._wr = _pair(height_factor, "height_factor"), _pair(width_factor, "width_factor")

    def transform(self, x, rng):
        n, h, w = x.shape[:3]
        shift = np.stack([rng.uniform(*self._hr, n) * h, rng.uniform(*self._wr, n) * w], axis=1)
        return augment.affine(x, np.zeros(n), np.ones(n), shift, self.fill_value)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}


# preprocessing.image pulls in the image-folder pipeline: loaded on first use.
__getattr__ = module_getattr(__name__, lazy={"image": ".image"})
