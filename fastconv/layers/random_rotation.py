"""RandomRotation(factor, fill_value=0.0, seed=None): during training each image is rotated by an
angle uniform in [-factor, factor] * 2*pi (a pair for (low, high)), positive = counter-clockwise,
bilinear; pixels from outside the image get fill_value (Keras's fill_mode="constant")."""
import numpy as np

from ..data import augment
from ._preprocessing import HostAugmentLayer, factor_range


class RandomRotation(HostAugmentLayer):
    def __init__(self, factor, fill_value=0.0, seed=None, **kwargs):
        super().__init__(seed=seed, fill_value=fill_value, **kwargs)
        self.factor = factor
        self._range = factor_range(factor, "factor")

    def transform(self, x, rng):
        theta = rng.uniform(*self._range, len(x)) * 2 * np.pi
        return augment.affine(x, theta, np.ones(len(x)), None, self.fill_value)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
