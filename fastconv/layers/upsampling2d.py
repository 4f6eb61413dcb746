"""UpSampling2D(size=(2, 2), interpolation="nearest"): enlarge NHWC images by integer factors.
'nearest' repeats each pixel size_h x size_w times; 'bilinear' is tf.image.resize's
half-pixel bilinear to (H * size_h, W * size_w), as Keras 3. 'nearest' is a broadcast
multiply by ones (its backward a reduction, no scatter: it often sits mid-network, as in
U-Nets); 'bilinear' is the preprocessing layers' gather-based resize. Differentiable on
every backend.

>>> from fastconv import layers
>>> layers.UpSampling2D((2, 3)).compute_output_shape((None, 4, 5, 3))
(None, 8, 15, 3)
"""
import numpy as np

from ..autograd import ops
from ..functional._args import pair
from ._preprocessing import like, resize
from .conv2d import check_nhwc
from .layer import Layer


class UpSampling2D(Layer):
    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' is supported, got {data_format!r}")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"UpSampling2D: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
        try:
            self.size = pair(size, "size")
        except ValueError:
            raise ValueError(f"{self.name} (UpSampling2D): size must be >= 1 on both axes, got {size!r}") from None
        self.interpolation = interpolation

    def call(self, inputs):
        check_nhwc(self, inputs.shape)
        n, h, w, c = inputs.shape
        sh, sw = self.size
        if self.interpolation == "bilinear":
            return resize(inputs, h * sh, w * sw, "bilinear")
        x = ops.reshape(inputs, (n, h, 1, w, 1, c)) * like(inputs, np.ones((1, 1, sh, 1, sw, 1)))
        return ops.reshape(x, (n, h * sh, w * sw, c))

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        n, h, w, c = input_shape
        return (n, None if h is None else h * self.size[0], None if w is None else w * self.size[1], c)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "interpolation": self.interpolation}
