"""Resizing(height, width, interpolation="bilinear", crop_to_aspect_ratio=False): resize NHWC
images to height x width.

Sampling follows TensorFlow's tf.image.resize (what Keras 3 uses) with antialias=False:
half-pixel centres, source coordinate (i + 0.5) * in / out - 0.5 for bilinear, clamped at
the borders; nearest takes floor((i + 0.5) * in / out). With crop_to_aspect_ratio the
largest centred window of the target aspect ratio is cut out first, so nothing is
stretched. Built from gathers and lerps (differentiable on every backend).

>>> from fastconv import layers
>>> layers.Resizing(4, 6).compute_output_shape((None, 8, 8, 3))
(None, 4, 6, 3)
"""
from ._preprocessing import aspect_crop, check_size, crop, resize
from .conv2d import check_nhwc
from .layer import Layer

INTERPOLATIONS = ("bilinear", "nearest")


class Resizing(Layer):
    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' is supported, got {data_format!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"Resizing: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.height, self.width = check_size(self, "height", height), check_size(self, "width", width)
        self.interpolation, self.crop_to_aspect_ratio = interpolation, bool(crop_to_aspect_ratio)

    def call(self, inputs):
        check_nhwc(self, inputs.shape)
        x = inputs
        if self.crop_to_aspect_ratio:
            x = crop(x, *aspect_crop(x.shape[1], x.shape[2], self.height, self.width))
        return resize(x, self.height, self.width, self.interpolation)

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation, "crop_to_aspect_ratio": self.crop_to_aspect_ratio}
