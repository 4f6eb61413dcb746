"""RandomTranslation(height_factor, width_factor, fill_mode="reflect", interpolation="bilinear",
seed=None, fill_value=0.0): during training each image is shifted down by a fraction uniform
in [lower, upper] of its height and right by one of its width (a number f gives (-|f|, |f|);
a pair is sorted; values in [-1, 1]), in sub-pixels, as Keras 3. Pixels from outside follow
`fill_mode` (see RandomRotation). Identity at inference."""
import numpy as np

from ._preprocessing import HostWarpLayer, keras_factor


class RandomTranslation(HostWarpLayer):
    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed, fill_value=fill_value,
                         data_format=data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._hr = keras_factor(self, height_factor, "height_factor")
        self._wr = keras_factor(self, width_factor, "width_factor")

    def transform(self, x, rng):
        n, h, w = x.shape[:3]
        shift = np.stack([rng.uniform(*self._hr, n) * h, rng.uniform(*self._wr, n) * w], axis=1)
        return self.warp(x, np.broadcast_to(np.eye(2), (n, 2, 2)), shift)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}
