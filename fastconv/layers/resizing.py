"""Resizing(height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0, antialias=False): resize NHWC
images to height x width (Keras 3's arguments and defaults).

Sampling follows TensorFlow's tf.image.resize (what Keras 3 uses) with antialias=False:
half-pixel centres, source coordinate (i + 0.5) * in / out - 0.5 for bilinear, clamped at
the borders; nearest takes floor((i + 0.5) * in / out); bicubic is Keys' kernel (a = -0.5) on
four taps, those outside the image dropped and the rest renormalised; area averages the input
cells each output cell covers; lanczos3/5 are tf.image.resize's (scale_and_translate, no
antialiasing): the Lanczos window around each sample, renormalised. With crop_to_aspect_ratio the
largest centred window of the target aspect ratio is cut out first, so nothing is
stretched; with pad_to_aspect_ratio the image is centred on a fill_value canvas of the target
aspect ratio first (Keras pads the same number of rows above and below, so an odd difference
gives one row less; likewise columns). Built from gathers and lerps (differentiable on every backend).

>>> from fastconv import layers
>>> layers.Resizing(4, 6).compute_output_shape((None, 8, 8, 3))
(None, 4, 6, 3)
"""
from ..autograd import ops
from ._preprocessing import aspect_crop, aspect_pad, check_size, crop, resize
from .conv2d import check_nhwc
from .layer import Layer

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")  # Keras 3's


class Resizing(Layer):
    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0, antialias=False,
                 data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' is supported, got {data_format!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"Resizing: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError("Resizing: only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be True")
        if fill_mode != "constant":  # Keras 3 supports no other either
            raise ValueError(f"Resizing: fill_mode must be 'constant', got {fill_mode!r}")
        if antialias:
            raise NotImplementedError("Resizing(antialias=True) is not supported (only antialias=False)")
        self.height, self.width = check_size(self, "height", height), check_size(self, "width", width)
        self.interpolation, self.crop_to_aspect_ratio = interpolation, bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio, self.fill_mode = bool(pad_to_aspect_ratio), fill_mode
        self.fill_value, self.antialias = float(fill_value), False

    def call(self, inputs):
        check_nhwc(self, inputs.shape)
        x = inputs
        h, w = x.shape[1], x.shape[2]
        if self.crop_to_aspect_ratio:
            x = crop(x, *aspect_crop(h, w, self.height, self.width))
        elif self.pad_to_aspect_ratio:
            top, left = aspect_pad(h, w, self.height, self.width)
            if top or left:
                x = ops.pad(x, ((0, 0), (top, top), (left, left), (0, 0)), value=self.fill_value)
        return resize(x, self.height, self.width, self.interpolation)

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation, "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio, "fill_mode": self.fill_mode,
                "fill_value": self.fill_value, "antialias": self.antialias}
