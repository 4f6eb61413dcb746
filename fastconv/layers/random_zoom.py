"""RandomZoom(height_factor, width_factor=None, fill_value=0.0, seed=None): during training each
image is zoomed by a factor uniform in [-f, f] (positive zooms out: the picture shrinks by 1 + f),
the same for both axes (Keras's default when width_factor is None; a different width_factor is not
supported); pixels from outside get fill_value."""
import numpy as np

from ..data import augment
from ._preprocessing import HostAugmentLayer, factor_range


class RandomZoom(HostAugmentLayer):
    def __init__(self, height_factor, width_factor=None, fill_value=0.0, seed=None, **kwargs):
        super().__init__(seed=seed, fill_value=fill_value, **kwargs)
        if width_factor is not None and width_factor != height_factor:
            raise NotImplementedError("RandomZoom with a width_factor different from height_factor")
        self.height_factor = height_factor
        self._range = factor_range(height_factor, "height_factor")
        if self._range[0] <= -1:
            raise ValueError(f"height_factor must stay above -1 (a zoom-in of 100%), got {height_factor!r}")

    def transform(self, x, rng):
        z = rng.uniform(*self._range, len(x))
        return augment.affine(x, np.zeros(len(x)), 1.0 / (1.0 + z), None, self.fill_value)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor}
