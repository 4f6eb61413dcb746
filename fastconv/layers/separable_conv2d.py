"""SeparableConv2D: a depthwise conv (kernel (kh, kw, C, M), no bias) followed by a 1x1
pointwise conv (kernel (1, 1, C*M, filters)) with bias and activation, as Keras.

>>> from fastconv import layers
>>> s = layers.SeparableConv2D(8, 3); _ = s.build((None, 10, 10, 4)); s.count_params()
76
"""
from ..autograd import ops
from ..functional._args import pair
from . import activation as act
from .conv2d import check_nhwc, check_padding, conv_out_hw
from .layer import Layer


class SeparableConv2D(Layer):
    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                 depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        for arg, v in (("filters", filters), ("depth_multiplier", depth_multiplier)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{arg} must be a positive int, got {v!r}")
        self.filters, self.depth_multiplier = filters, depth_multiplier
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.strides = pair(strides, "strides")
        self.dilation_rate = pair(dilation_rate, "dilation_rate")
        self.padding = check_padding(padding)
        self.activation = act.resolve(activation)
        self.use_bias = bool(use_bias)
        self._inits = (depthwise_initializer, pointwise_initializer, bias_initializer)
        self._regs = (depthwise_regularizer, pointwise_regularizer, bias_regularizer)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)  # refuses impossible geometry now, as Conv2D
        c = input_shape[-1]
        if c is None:
            raise ValueError(f"{self.name}: the channel axis must be known, got shape {tuple(input_shape)}")
        self._in_channels = c
        m = self.depth_multiplier
        self.depthwise_kernel = self.add_weight("depthwise_kernel", self.kernel_size + (c, m),
                                                self._inits[0], regularizer=self._regs[0])
        self.pointwise_kernel = self.add_weight("pointwise_kernel", (1, 1, c * m, self.filters),
                                                self._inits[1], regularizer=self._regs[1])
        self.bias = (self.add_weight("bias", (self.filters,), self._inits[2], regularizer=self._regs[2])
                     if self.use_bias else None)

    def call(self, inputs):
        check_nhwc(self, inputs.shape, self._in_channels)
        y = ops.depthwise_conv2d(inputs, self.depthwise_kernel, None, strides=self.strides,
                                 padding=self.padding, dilation_rate=self.dilation_rate)
        y = ops.conv2d(y, self.pointwise_kernel, None)
        return act.apply(y, self.bias, self.activation)

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        h, w = conv_out_hw(self, input_shape, self.kernel_size, self.strides, self.padding, self.dilation_rate)
        return (input_shape[0], h, w, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "depth_multiplier": self.depth_multiplier, "activation": act.serialize(self.activation),
                "use_bias": self.use_bias}
