"""RandomZoom(height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear",
seed=None, fill_value=0.0): during training each image is zoomed about its centre, as Keras 3:
the sampling grid is scaled by 1 + f with f uniform in [lower, upper] (a number h gives
(-|h|, |h|); a pair is sorted; values in (-1, 1]); positive f zooms out (the picture shrinks),
negative zooms in. width_factor=None uses the height's draw for both axes (the aspect ratio
kept); otherwise the width gets its own. Pixels from outside follow `fill_mode` (see
RandomRotation). Identity at inference."""
import numpy as np

from ._preprocessing import HostWarpLayer, keras_factor


class RandomZoom(HostWarpLayer):
    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear",
                 seed=None, fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed, fill_value=fill_value,
                         data_format=data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._hr = keras_factor(self, height_factor, "height_factor", low_open=True)
        self._wr = None if width_factor is None else keras_factor(self, width_factor, "width_factor", low_open=True)

    def transform(self, x, rng):
        n = len(x)
        zy = 1.0 + rng.uniform(*self._hr, n)
        zx = zy if self._wr is None else 1.0 + rng.uniform(*self._wr, n)
        linear = np.zeros((n, 2, 2))
        linear[:, 0, 0], linear[:, 1, 1] = zy, zx
        return self.warp(x, linear)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}
