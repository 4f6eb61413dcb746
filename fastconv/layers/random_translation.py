"""RandomTranslation(height_factor, width_factor, fill_value=0.0, seed=None): during training each
image is shifted by a fraction uniform in [-f, f] of its height/width, in (sub-)pixels, bilinear;
pixels from outside get fill_value."""
import numpy as np

from ..data import augment
from ._preprocessing import HostAugmentLayer, factor_range


class RandomTranslation(HostAugmentLayer):
    def __init__(self, height_factor, width_factor, fill_value=0.0, seed=None, **kwargs):
        super().__init__(seed=seed, fill_value=fill_value, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._hr, self._wr = factor_range(height_factor, "height_factor"), factor_range(width_factor, "width_factor")

    def transform(self, x, rng):
        n, h, w = x.shape[:3]
        shift = np.stack([rng.uniform(*self._hr, n) * h, rng.uniform(*self._wr, n) * w], axis=1)
        return augment.affine(x, np.zeros(n), np.ones(n), shift, self.fill_value)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}
