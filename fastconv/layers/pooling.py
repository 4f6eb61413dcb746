"""MaxPooling2D / AveragePooling2D (aliases MaxPool2D / AvgPool2D), NHWC, Keras arguments:
strides default to pool_size; 'same' pads as TF, padded cells never win the max and are not
counted by the average.

>>> from fastconv import layers
>>> layers.MaxPooling2D(2).compute_output_shape((None, 7, 7, 3))
(None, 3, 3, 3)
>>> layers.AveragePooling2D(3, strides=2, padding="same").compute_output_shape((None, 7, 7, 3))
(None, 4, 4, 3)
"""
from ..autograd import ops
from ..functional._args import pair
from .conv2d import check_nhwc, check_padding, conv_out_hw
from .layer import Layer


class _Pooling2D(Layer):
    _op = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else pair(strides, "strides")
        self.padding = check_padding(padding)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)  # refuses impossible geometry now, as Conv2D

    def call(self, inputs):
        check_nhwc(self, inputs.shape)
        return type(self)._op(inputs, self.pool_size, self.strides, self.padding)

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        h, w = conv_out_hw(self, input_shape, self.pool_size, self.strides, self.padding, (1, 1), "pool_size")
        return (input_shape[0], h, w, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    _op = staticmethod(ops.max_pool2d)


class AveragePooling2D(_Pooling2D):
    _op = staticmethod(ops.avg_pool2d)


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
