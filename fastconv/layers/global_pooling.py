"""GlobalAveragePooling2D / GlobalMaxPooling2D (aliases GlobalAvgPool2D / GlobalMaxPool2D):
(N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims=True.

>>> from fastconv import layers
>>> layers.GlobalAveragePooling2D(keepdims=True).compute_output_shape((None, 7, 7, 32))
(None, 1, 1, 32)
"""
from ..autograd import ops
from .conv2d import check_nhwc
from .layer import Layer


class _GlobalPooling2D(Layer):
    _op = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' (NHWC) is supported, got {data_format!r}")
        self.keepdims = bool(keepdims)

    def call(self, inputs):
        check_nhwc(self, inputs.shape)
        y = type(self)._op(inputs)
        return y.reshape(y.shape[0], 1, 1, y.shape[1]) if self.keepdims else y

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        n, c = input_shape[0], input_shape[3]
        return (n, 1, 1, c) if self.keepdims else (n, c)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    _op = staticmethod(ops.global_avg_pool2d)


class GlobalMaxPooling2D(_GlobalPooling2D):
    _op = staticmethod(ops.global_max_pool2d)


GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
