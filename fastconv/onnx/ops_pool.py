"""Pooling: MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D.

'same' average pooling divides by the count of real cells (ONNX's count_include_pad=0, its
default), and padded cells never win a max, as in fastconv. NaN: fastconv's max pools
propagate NaN (a window holding NaN pools to NaN), while onnxruntime's MaxPool and
GlobalMaxPool skip it; so each max pool also pools an IsNaN mask and puts NaN back where
a window held one.
"""
import numpy as np

from ..layers.global_pooling import GlobalAveragePooling2D, GlobalMaxPooling2D
from ..layers.pooling import AveragePooling2D, MaxPooling2D
from .graph import Value
from .ops_conv import window_attrs
from .registry import register


def _nan_preserving(g, op, x, name, **attrs):
    y = g.op(op, [x], f"{name}/{op.lower()}", **attrs)
    mask = g.op("Cast", [g.op("IsNaN", [x], f"{name}/isnan")], f"{name}/nan_mask", to=1)  # 1 = FLOAT
    pooled = g.op(op, [mask], f"{name}/nan_pool", **attrs)
    has_nan = g.op("Greater", [pooled, g.const(np.float32(0), f"{name}/zero")], f"{name}/has_nan")
    return g.op("Where", [has_nan, g.const(np.float32(np.nan), f"{name}/nan"), y], f"{name}/nan_where")


@register(MaxPooling2D)
def _max_pool(g, layer, x):
    x = g.as_nchw(x, layer.name)
    attrs = window_attrs(x, layer.pool_size, layer.strides, layer.padding)
    return Value(_nan_preserving(g, "MaxPool", x.name, layer.name, **attrs), "nchw",
                 layer.compute_output_shape(x.shape))


@register(AveragePooling2D)
def _avg_pool(g, layer, x):
    x = g.as_nchw(x, layer.name)
    attrs = window_attrs(x, layer.pool_size, layer.strides, layer.padding)
    y = g.op("AveragePool", [x.name], f"{layer.name}/avgpool", count_include_pad=0, **attrs)
    return Value(y, "nchw", layer.compute_output_shape(x.shape))


def _global(g, layer, x, op):
    x = g.as_nchw(x, layer.name)
    y = _nan_preserving(g, op, x.name, layer.name) if op == "GlobalMaxPool" else \
        g.op(op, [x.name], f"{layer.name}/{op.lower()}")
    shape = layer.compute_output_shape(x.shape)
    if layer.keepdims:
        return Value(y, "nchw", shape)
    return Value(g.op("Flatten", [y], f"{layer.name}/flatten", axis=1), "keras", shape)


@register(GlobalAveragePooling2D)
def _global_avg(g, layer, x):
    return _global(g, layer, x, "GlobalAveragePool")


@register(GlobalMaxPooling2D)
def _global_max(g, layer, x):
    return _global(g, layer, x, "GlobalMaxPool")
