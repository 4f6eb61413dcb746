"""RandomRotation(factor, fill_mode="reflect", interpolation="bilinear", seed=None,
fill_value=0.0): during training each image is rotated about its centre by an angle uniform in
[lower, upper] * 360 degrees (factor f: (-|f|, |f|); a pair (lower, upper) within [-1, 1]),
positive = counter-clockwise, as Keras 3. Pixels from outside the image follow `fill_mode`:
"reflect" (d c b a | a b c d | d c b a), "wrap" (a b c d | a b c d), "nearest"
(a a | a b c d | d d), "constant" (fill_value; border pixels blend with it). Identity at
inference.

>>> import numpy as np
>>> from fastconv import layers
>>> x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
>>> layers.RandomRotation((0.25, 0.25))(x, training=True).numpy()[0, :, :, 0].round(4)
array([[2., 5., 8.],
       [1., 4., 7.],
       [0., 3., 6.]], dtype=float32)
"""
import numpy as np

from ._preprocessing import HostWarpLayer, keras_factor


class RandomRotation(HostWarpLayer):
    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed, fill_value=fill_value,
                         data_format=data_format, **kwargs)
        self.factor = factor
        self._range = keras_factor(self, factor, "factor")

    def transform(self, x, rng):
        theta = np.deg2rad(rng.uniform(*self._range, len(x)) * 360.0)
        cos, sin = np.cos(theta), np.sin(theta)
        # rows first: the source row moves with +sin of the column offset (Keras's (x, y) matrix
        # [[cos, -sin], [sin, cos]] with its axes swapped)
        linear = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1)
        return self.warp(x, linear)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
