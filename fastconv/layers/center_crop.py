"""CenterCrop(height, width): the centred height x width window of NHWC images (top/left
offset (in - out) // 2). As in Keras 3, an image smaller than the target on either side is
instead resized (bilinear) after cutting the largest centred window of the target aspect
ratio, so the output always has the target size.

>>> import numpy as np
>>> from fastconv import layers
>>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
>>> layers.CenterCrop(2, 2)(x).numpy()[0, :, :, 0]
array([[ 5.,  6.],
       [ 9., 10.]], dtype=float32)
"""
from ._preprocessing import aspect_crop, check_size, crop, resize
from .conv2d import check_nhwc
from .layer import Layer


def center_crop(x, height, width):
    h, w = x.shape[1], x.shape[2]
    if h >= height and w >= width:
        return crop(x, (h - height) // 2, (w - width) // 2, height, width)
    return resize(crop(x, *aspect_crop(h, w, height, width)), height, width, "bilinear")


class CenterCrop(Layer):
    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' is supported, got {data_format!r}")
        self.height, self.width = check_size(self, "height", height), check_size(self, "width", width)

    def call(self, inputs):
        check_nhwc(self, inputs.shape)
        return center_crop(inputs, self.height, self.width)

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}
