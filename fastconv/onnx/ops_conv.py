"""Convolutions and Dense: Conv2D (groups, dilation), DepthwiseConv2D, SeparableConv2D,
Conv2DTranspose, Dense.

Kernels are stored as ONNX wants them (OIHW; (C_in, C_out, kh, kw) for ConvTranspose), so the
graph does no weight transposes at run time. 'same' padding is TensorFlow's, written as four
explicit pads (the extra row/column at the bottom/right) computed from the layer's static input
size; when that size is unknown (an Input((None, None, C))), auto_pad=SAME_UPPER, which is the
same rule evaluated at run time.
"""
import numpy as np

from ..functional._args import resolve_padding
from ..layers.conv2d import Conv2D
from ..layers.conv2d_transpose import Conv2DTranspose
from ..layers.dense import Dense
from ..layers.depthwise_conv2d import DepthwiseConv2D
from ..layers.separable_conv2d import SeparableConv2D
from .graph import Value
from .ops_activation import apply_activation
from .registry import register


def weights(variable):
    return np.asarray(variable.numpy(), np.float32)


def window_attrs(x, kernel, strides, padding, dilation=(1, 1)):
    """ONNX Conv/Pool attributes for a Keras window on NCHW value x."""
    attrs = {"kernel_shape": list(kernel), "strides": list(strides)}
    if tuple(dilation) != (1, 1):
        attrs["dilations"] = list(dilation)
    hw = x.shape[1:3]
    if padding == "same" and None in hw:
        attrs["auto_pad"] = "SAME_UPPER"  # TF's rule: the extra cell after
    else:
        t, b, l, r = resolve_padding(padding, hw, kernel, strides, dilation)
        attrs["pads"] = [t, l, b, r]  # ONNX order: all begins, then all ends
    return attrs


def _out_shape(layer, x):
    return layer.compute_output_shape(x.shape)


def _conv(g, x, kernel, bias, attrs, name, group=1):
    """Conv of NCHW value x; kernel and bias are initializer names (bias may be None)."""
    inputs = [x.name, kernel] + ([] if bias is None else [bias])
    return g.op("Conv", inputs, f"{name}/conv", group=group, **attrs)


def _hwio_to_oihw(kernel):
    return kernel.transpose(3, 2, 0, 1)  # groups split O as Keras does


def _bias(g, layer):
    return None if layer.bias is None else g.weight(layer.bias, f"{layer.name}/bias")


@register(Conv2D)
def _conv2d(g, layer, x):
    x = g.as_nchw(x, layer.name)
    kernel = g.weight(layer.kernel, f"{layer.name}/kernel", "oihw", _hwio_to_oihw)
    y = _conv(g, x, kernel, _bias(g, layer), window_attrs(x, layer.kernel_size, layer.strides, layer.padding,
                                               layer.dilation_rate), layer.name, layer.groups)
    return apply_activation(g, Value(y, "nchw", _out_shape(layer, x)), layer.activation, layer)


def _depthwise(g, layer, x, use_bias):
    kh, kw, c, m = layer.depthwise_kernel.shape
    # (kh, kw, C, M) -> (C*M, 1, kh, kw): output channel c*M + m, as Keras orders them.
    kernel = g.weight(layer.depthwise_kernel, f"{layer.name}/depthwise_kernel", "oihw",
                      lambda k: k.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None])
    bias = _bias(g, layer) if use_bias else None
    attrs = window_attrs(x, layer.kernel_size, layer.strides, layer.padding, layer.dilation_rate)
    return _conv(g, x, kernel, bias, attrs, f"{layer.name}/depthwise", group=c)


@register(DepthwiseConv2D)
def _depthwise_conv2d(g, layer, x):
    x = g.as_nchw(x, layer.name)
    y = _depthwise(g, layer, x, use_bias=True)
    return apply_activation(g, Value(y, "nchw", _out_shape(layer, x)), layer.activation, layer)


@register(SeparableConv2D)
def _separable_conv2d(g, layer, x):
    x = g.as_nchw(x, layer.name)
    shape = _out_shape(layer, x)
    depthwise = Value(_depthwise(g, layer, x, use_bias=False), "nchw", shape[:3] + (None,))
    pointwise = g.weight(layer.pointwise_kernel, f"{layer.name}/pointwise_kernel", "oihw", _hwio_to_oihw)
    y = _conv(g, depthwise, pointwise, _bias(g, layer), {"kernel_shape": [1, 1]}, f"{layer.name}/pointwise")
    return apply_activation(g, Value(y, "nchw", shape), layer.activation, layer)


@register(Conv2DTranspose)
def _conv2d_transpose(g, layer, x):
    x = g.as_nchw(x, layer.name)
    if None in x.shape[1:3]:
        from .registry import unsupported
        raise unsupported(layer, f"Conv2DTranspose needs a known input height and width, got {x.shape}")
    pads, extra = [], []
    for i in range(2):
        out, before, after = layer._geometry(x.shape[1 + i], i)
        span = (layer.kernel_size[i] - 1) * layer.dilation_rate[i] + 1
        full = (x.shape[1 + i] - 1) * layer.strides[i] + span  # ConvTranspose's output before cropping
        if full >= out:
            pads.append((before, after))
            extra.append(0)
        else:  # a longer output than the full transposed conv: ONNX's output_padding adds it at the end
            pads.append((0, 0))
            extra.append(out - full)
    # Keras (kh, kw, filters, C_in) -> ONNX ConvTranspose (C_in, filters, kh, kw).
    inputs = [x.name, g.weight(layer.kernel, f"{layer.name}/kernel", "oihw", _hwio_to_oihw)]
    if layer.bias is not None:
        inputs.append(_bias(g, layer))
    attrs = {"kernel_shape": list(layer.kernel_size), "strides": list(layer.strides),
             "pads": [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]}
    if tuple(layer.dilation_rate) != (1, 1):
        attrs["dilations"] = list(layer.dilation_rate)
    if any(extra):
        attrs["output_padding"] = extra
    y = g.op("ConvTranspose", inputs, f"{layer.name}/conv_transpose", **attrs)
    return apply_activation(g, Value(y, "nchw", _out_shape(layer, x)), layer.activation, layer)


@register(Dense)
def _dense(g, layer, x):
    x = g.as_keras(x)  # Dense acts on the last Keras axis
    kernel = g.weight(layer.kernel, f"{layer.name}/kernel")
    if x.ndim == 2:
        inputs = [x.name, kernel] + ([] if layer.bias is None else [_bias(g, layer)])
        y = g.op("Gemm", inputs, f"{layer.name}/gemm")
    else:
        y = g.op("MatMul", [x.name, kernel], f"{layer.name}/matmul")
        if layer.bias is not None:
            y = g.op("Add", [y, _bias(g, layer)], f"{layer.name}/bias_add")
    return apply_activation(g, Value(y, "keras", _out_shape(layer, x)), layer.activation, layer)
