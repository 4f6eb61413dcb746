"""Cropping2D(cropping=((0, 0), (0, 0))): remove rows and columns at the edges of NHWC
images: an int (all four sides), (rows, cols) (symmetric) or ((top, bottom), (left, right)).
Cropping all of an axis away raises ValueError at build, naming the layer and the shapes.

>>> from fastconv import layers
>>> layers.Cropping2D(((1, 2), (0, 3))).compute_output_shape((None, 8, 8, 3))
(None, 5, 5, 3)
"""
from .conv2d import check_nhwc
from .layer import Layer
from .zero_padding2d import _pads


class Cropping2D(Layer):
    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' is supported, got {data_format!r}")
        try:
            self.cropping = _pads(cropping)  # ZeroPadding2D's argument forms, the same rules
        except ValueError:
            raise ValueError(f"cropping must be a non-negative int, (rows, cols) or ((top, bottom), "
                             f"(left, right)), got {cropping!r}") from None

    def build(self, input_shape):
        self.compute_output_shape(input_shape)  # refuse impossible geometry now

    def call(self, inputs):
        self.compute_output_shape(inputs.shape)
        (t, b), (l, r) = self.cropping
        _, h, w, _ = inputs.shape
        return inputs[:, t:h - b, l:w - r, :]

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        (t, b), (l, r) = self.cropping
        n, h, w, c = input_shape
        if (h is not None and t + b >= h) or (w is not None and l + r >= w):
            raise ValueError(f"{self.name} (Cropping2D): cropping {self.cropping} leaves nothing of input "
                             f"shape {tuple(input_shape)}")
        return (n, None if h is None else h - t - b, None if w is None else w - l - r, c)

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping}
