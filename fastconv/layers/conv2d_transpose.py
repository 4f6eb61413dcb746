"""Conv2DTranspose(filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None,
dilation_rate=(1, 1), activation=None, use_bias=True, ...): the transposed convolution, i.e.
the gradient of a Conv2D with respect to its input.

The kernel has Keras's layout (kh, kw, filters, input_channels): exactly the HWIO kernel of
the forward Conv2D that maps a (N, H_out, W_out, filters) image to this layer's input, so
the forward pass is that conv's backward-data kernel, and this layer's backward pass is the
conv's forward (gradient of the input) and backward-weights (gradient of the kernel). No new
kernels: it runs on every backend. Parameters kh * kw * filters * channels + filters.

Output size per axis (Keras): without output_padding, 'valid': in * s + max(k - s, 0), i.e.
(in - 1) * s + k when k >= s; 'same': in * s. With output_padding p (< stride):
(in - 1) * s + k - 2 * (k // 2 if 'same' else 0) + p, k the dilated kernel size. The pads of
the underlying conv follow TensorFlow's 'same' rule on the output size (extra at the bottom/
right), zero for 'valid'.

>>> from fastconv import layers
>>> layers.Conv2DTranspose(8, 3, strides=2, padding="same").compute_output_shape((None, 7, 7, 4))
(None, 14, 14, 8)
"""
from ..autograd.function import Function
from ..functional._args import floats, kernels, pair
from . import activation as act
from .conv2d import check_nhwc, check_padding
from .layer import Layer


class _TransposedConv(Function):
    def forward(self, x, w, out_hw=None, strides=None, pads=None, dilation=None):
        # floats(): the kernels take contiguous arrays of the backend's dtype (x may be a
        # strided view, e.g. a Cropping2D output).
        x, w = floats(x, "x"), floats(w, "w")
        self.x, self.w, self.conv = x, w, (strides, pads, dilation)
        shape = (x.shape[0],) + tuple(out_hw) + (w.shape[2],)
        return kernels().conv2d_backward_data(x, w, shape, strides, pads, dilation, 1)

    def backward(self, g):
        k, g = kernels(), floats(g, "dy")
        dx = k.conv2d_forward(g, self.w, None, *self.conv, 1) if self.needs[0] else None
        dw = None
        if len(self.needs) > 1 and self.needs[1]:
            # <g, bd(x, w)> = <conv(g, w), x>: the kernel gradient of a conv whose input is g
            # and whose output gradient is x.
            dw, _ = k.conv2d_backward_weights(self.x, g, tuple(self.w.shape), *self.conv, 1, False)
        return dx, dw


class Conv2DTranspose(Layer):
    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"only data_format='channels_last' is supported, got {data_format!r}")
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        self.filters = filters
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.strides = pair(strides, "strides")
        self.dilation_rate = pair(dilation_rate, "dilation_rate")
        self.padding = check_padding(padding)
        self.output_padding = None if output_padding is None else pair(output_padding, "output_padding", minimum=0)
        if self.output_padding is not None and any(
                not 0 <= p < s for p, s in zip(self.output_padding, self.strides)):
            raise ValueError(f"Conv2DTranspose: output_padding {self.output_padding} must be >= 0 and "
                             f"smaller than strides {self.strides}")
        self.activation = act.resolve(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer

    def _geometry(self, size, i):
        """(output length, pad before, pad after) along spatial axis i for input length size."""
        s, d = self.strides[i], self.dilation_rate[i]
        k = (self.kernel_size[i] - 1) * d + 1
        if self.output_padding is None:
            out = size * s + max(k - s, 0) if self.padding == "valid" else size * s
        else:
            pad = k // 2 if self.padding == "same" else 0
            out = (size - 1) * s + k - 2 * pad + self.output_padding[i]
        if out < 1:
            raise ValueError(f"{self.name} (Conv2DTranspose): input length {size} gives output length {out}")
        if self.padding == "valid":
            return out, 0, 0
        total = max((size - 1) * s + k - out, 0)  # TF's 'same' pads of the conv on `out`
        return out, total // 2, total - total // 2

    def build(self, input_shape):
        check_nhwc(self, input_shape)
        cin = input_shape[-1]
        if cin is None:
            raise ValueError(f"{self.name}: input channels must be known; input shape {tuple(input_shape)}")
        self.compute_output_shape(input_shape)
        self.kernel = self.add_weight("kernel", self.kernel_size + (self.filters, cin),
                                      self.kernel_initializer, regularizer=self.kernel_regularizer)
        self.bias = (self.add_weight("bias", (self.filters,), self.bias_initializer,
                                     regularizer=self.bias_regularizer) if self.use_bias else None)
        self._in_channels = cin

    def call(self, inputs):
        check_nhwc(self, inputs.shape, self._in_channels)
        (oh, t, b), (ow, l, r) = self._geometry(inputs.shape[1], 0), self._geometry(inputs.shape[2], 1)
        y = _TransposedConv.apply(inputs, self.kernel, out_hw=(oh, ow), strides=self.strides,
                                  pads=(t, b, l, r), dilation=self.dilation_rate)
        return act.apply(y, self.bias, self.activation)

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        hw = [None if input_shape[1 + i] is None else self._geometry(input_shape[1 + i], i)[0] for i in range(2)]
        return (input_shape[0], hw[0], hw[1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "output_padding": self.output_padding,
                "dilation_rate": self.dilation_rate, "activation": act.serialize(self.activation),
                "use_bias": self.use_bias}


