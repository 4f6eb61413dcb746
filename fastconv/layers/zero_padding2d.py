"""ZeroPadding2D(padding): int, (ph, pw) or ((top, bottom), (left, right)) rows/columns of
zeros around NHWC images.

>>> from fastconv import layers
>>> layers.ZeroPadding2D(((1, 2), (3, 4))).compute_output_shape((None, 5, 5, 2))
(None, 8, 12, 2)
"""
from ..autograd import ops
from .conv2d import check_nhwc
from .layer import Layer


def _pads(padding):
    def ok(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    if ok(padding):
        return ((padding, padding), (padding, padding))
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(ok(p) for p in padding):
            return ((padding[0], padding[0]), (padding[1], padding[1]))
        if all(isinstance(p, (tuple, list)) and len(p) == 2 and all(ok(v) for v in p) for p in padding):
            return (tuple(padding[0]), tuple(padding[1]))
    raise ValueError(f"padding must be a non-negative int, (ph, pw) or ((top, bottom), (left, right)), "
                     f"got {padding!r}")


class ZeroPadding2D(Layer):
    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' is supported, got {data_format!r}")
        self.padding = _pads(padding)

    def call(self, inputs):
        check_nhwc(self, inputs.shape)
        return ops.pad(inputs, ((0, 0),) + self.padding + ((0, 0),))

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        (t, b), (l, r) = self.padding
        n, h, w, c = input_shape
        return (n, None if h is None else h + t + b, None if w is None else w + l + r, c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}
