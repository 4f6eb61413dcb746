"""Conv2D (NHWC input, HWIO kernel (kh, kw, Cin/groups, filters)), Keras arguments and TF
'same' padding.

>>> from fastconv import layers
>>> c = layers.Conv2D(16, 3); _ = c.build((None, 28, 28, 3)); c.count_params()
448
>>> c.compute_output_shape((None, 28, 28, 3))
(None, 26, 26, 16)
"""
from ..autograd import ops
from ..autograd.tensor import is_grad_enabled
from ..functional import conv_output_size
from ..functional._args import pair
from . import activation as act
from .layer import Layer


def check_padding(padding):
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return padding.lower()


def conv_out_hw(layer, shape, kernel, strides, padding, dilation, window="kernel_size"):
    """(None, H, W, C) -> (H_out, W_out); unknown sizes stay None.

    The one place windowed layers get their output size: conv_output_size refuses a window
    that does not fit, and this names the layer and its arguments in that error."""
    try:
        return tuple(None if shape[1 + i] is None else
                     conv_output_size(shape[1 + i], kernel[i], strides[i], padding, dilation[i]) for i in range(2))
    except ValueError as e:
        dil = f", dilation_rate={tuple(dilation)}" if window == "kernel_size" else ""  # pools have none
        raise ValueError(f"{layer.name} ({type(layer).__name__}): input shape {tuple(shape)} does not fit "
                         f"{window}={tuple(kernel)}, strides={tuple(strides)}, padding={padding!r}{dil}: {e}") from None


def check_nhwc(layer, shape, channels=None):
    if len(shape) != 4:
        raise ValueError(f"{layer.name}: {type(layer).__name__} expects NHWC inputs of rank 4, "
                         f"got shape {tuple(shape)}")
    if channels is not None and shape[-1] != channels:
        raise ValueError(f"{layer.name}: expected inputs with {channels} channels, shape "
                         f"(None, H, W, {channels}), got shape {tuple(shape)}")


class Conv2D(Layer):
    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or filters % groups:
            raise ValueError(f"groups must be a positive int dividing filters={filters}, got {groups!r}")
        self.filters, self.groups = filters, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.strides = pair(strides, "strides")
        self.dilation_rate = pair(dilation_rate, "dilation_rate")
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise ValueError(f"strides > 1 and dilation_rate > 1 cannot be combined (Keras), got "
                             f"strides={self.strides}, dilation_rate={self.dilation_rate}")
        self.padding = check_padding(padding)
        self.activation = act.resolve(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer, self.bias_regularizer = kernel_regularizer, bias_regularizer

    def build(self, input_shape):
        self.compute_output_shape(input_shape)  # refuses impossible geometry now (as Keras 3), not at predict
        cin = input_shape[-1]
        if cin is None or cin % self.groups:
            raise ValueError(f"{self.name}: input channels ({cin}) must be known and divisible by "
                             f"groups={self.groups}; input shape {tuple(input_shape)}")
        self.kernel = self.add_weight("kernel", self.kernel_size + (cin // self.groups, self.filters),
                                      self.kernel_initializer, regularizer=self.kernel_regularizer)
        self.bias = (self.add_weight("bias", (self.filters,), self.bias_initializer,
                                     regularizer=self.bias_regularizer) if self.use_bias else None)
        self._in_channels = cin

    def call(self, inputs, _fold=None, _activation=None, _pads=None, _max_pool=None, _avg_pool=None):
        # _fold (a BatchNormalization at inference), _activation and _pads (a ZeroPadding2D's
        # ((top, bottom), (left, right)) on a 'valid' conv) come from a fused layer chain
        # (engine/fusion.py), only on a conv whose own activation is linear. _max_pool (a
        # MaxPooling2D after this conv's ReLU) comes from one too, with no _fold; so does _avg_pool
        # (an AveragePooling2D after this conv's own relu, sigmoid or tanh).
        check_nhwc(self, inputs.shape, self._in_channels)
        if _avg_pool is not None:
            return ops.conv2d_activation_avg_pool(inputs, self.kernel, self.bias, strides=self.strides,
                                                  padding=_pads or self.padding, dilation_rate=self.dilation_rate,
                                                  groups=self.groups, activation=self.activation,
                                                  pool_size=_avg_pool.pool_size, pool_strides=_avg_pool.strides,
                                                  pool_padding=_avg_pool.padding)
        if _max_pool is not None:
            return ops.conv2d_relu_max_pool(inputs, self.kernel, self.bias, strides=self.strides,
                                            padding=_pads or self.padding, dilation_rate=self.dilation_rate,
                                            groups=self.groups, pool_size=_max_pool.pool_size,
                                            pool_strides=_max_pool.strides, pool_padding=_max_pool.padding)
        if _fold is not None and not is_grad_enabled() and self.kernel.size > self._output_size(inputs.shape):
            # Inference on few images (predict at batch 1): folding the batch norm rewrites the
            # whole kernel at every call (ResNet-18's 11M weights: ~12 ms of a 35 ms predict),
            # while normalising the output touches fewer values. Same result up to rounding.
            y = ops.conv2d(inputs, self.kernel, self.bias, strides=self.strides, padding=_pads or self.padding,
                           dilation_rate=self.dilation_rate, groups=self.groups)
            return _fold(y, training=False, _activation=_activation)
        kernel, bias = (self.kernel, self.bias) if _fold is None else _fold.folded_into(self.kernel, self.bias)
        activation = _activation or self.activation
        # Bias and the elementwise activations run inside the conv kernel (one pass over the
        # output); softmax or a callable follows as its own op.
        fused = act.fusable(activation)
        y = ops.conv2d(inputs, kernel, bias, strides=self.strides, padding=_pads or self.padding,
                       dilation_rate=self.dilation_rate, groups=self.groups,
                       activation=activation if fused else "linear")
        return y if fused else act.apply(y, None, activation)

    def _output_size(self, input_shape):
        # about the output's element count ('same'-sized; exact enough to pick a strategy)
        n, h, w, _ = input_shape
        return n * -(-h // self.strides[0]) * -(-w // self.strides[1]) * self.filters

    def compute_output_shape(self, input_shape):
        check_nhwc(self, input_shape)
        h, w = conv_out_hw(self, input_shape, self.kernel_size, self.strides, self.padding, self.dilation_rate)
        return (input_shape[0], h, w, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "groups": self.groups, "activation": act.serialize(self.activation), "use_bias": self.use_bias}
