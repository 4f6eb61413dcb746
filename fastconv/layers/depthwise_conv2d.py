"""DepthwiseConv2D: each input channel convolved with its own depth_multiplier filters.
Keras kernel layout (kh, kw, C, M); output channel c*M + m.

>>> from fastconv import layers
>>> d = layers.DepthwiseConv2D(3, depth_multiplier=2); _ = d.build((None, 8, 8, 4))
>>> d.depthwise_kernel.shape, d.compute_output_shape((None, 8, 8, 4))
((3, 3, 4, 2), (None, 6, 6, 8))
"""
from ..autograd import ops
from ..functional._args import pair
from . import activation as act
from .conv2d import check_nhwc, check_padding, conv_out_hw
from .layer import Layer


class DepthwiseConv2D(Layer):
    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, int) or depth_multiplier < 1:
            raise ValueError(f"depth_multiplier must be a positive int, got {depth_multiplier!r}")
        self.depth_multiplier = depth_multiplier
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.strides = pair(strides, "strides")
        self.dilation_rate = pair(dilation_rate, "dilation_rate")
        self.padding = check_padding(padding)
        self.activation = act.resolve(activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer, self.bias_initializer = depthwise_initializer, bias_initializer
        self.depthwise_regularizer, self.bias_regularizer = depthwise_regularizer, bias_regularizer

    def build(self, input_shape):
        self.compute_output_shape(input_shape)  # refuses impossible geometry now, as Conv2D
        c = input_shape[-1]
        if c is None:
            raise ValueError(f"{self.name}: the channel axis must be known, got shape {tuple(input_shape)}")
        self._in_channels = c
        self.depthwise_kernel = self.add_weight("depthwise_kernel", self.kernel_size + (c, self.depth_multiplier),
                                                self.depthwise_initializer, regularizer=self.depthwise_regularizer)
        self.bias = (self.add_weight("bias", (c * self.depth_multiplier,), self.bias_initializer,
                                     regularizer=self.bias_regularizer) if self.use_bias else None)

    def call(self, inputs):
        check_nhwc(self, inputs.shape, self._in_channels)
        y = ops.depthwise_conv2d(inputs, self.depthwise_kernel, None, strides=self.strides,
                                 padding=self.padding, dilation_rate=self.dilation_rate)
        return act.apply(y, self.bias, self.activation)

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        h, w = conv_out_hw(self, input_shape, self.kernel_size, self.strides, self.padding, self.dilation_rate)
        c = input_shape[-1]
        return (input_shape[0], h, w, None if c is None else c * self.depth_multiplier)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "depth_multiplier": self.depth_multiplier,
                "dilation_rate": self.dilation_rate, "activation": act.serialize(self.activation),
                "use_bias": self.use_bias}
