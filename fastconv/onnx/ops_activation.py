"""Activations: the `activation=` argument of Conv2D/Dense/... and the activation layers.

Each keeps its input's layout (elementwise), except softmax/log_softmax, whose Keras axis is
mapped to where that axis sits in the value as held. Formulas are Keras 3's (see
fastconv.activations): gelu is exact (erf), hard_sigmoid is relu6(x + 3) / 6, leaky_relu's
default slope 0.2. Every one propagates NaN in onnxruntime as fastconv does.
"""
import math

import numpy as np

from ..layers.activation import Activation, ReLU, Softmax
from ..layers.elu import ELU
from ..layers.leaky_relu import LeakyReLU
from ..layers.prelu import PReLU
from ..activations import SELU_ALPHA, SELU_SCALE
from .graph import Value
from .registry import register, unsupported


def _scalar(g, v, name):
    return g.const(np.float32(v), name)


def _mul(g, a, b, name):
    return g.op("Mul", [a, b], name)


def _softplus(g, x, name):
    # max(x, 0) + log(1 + exp(-|x|)): never overflows, as fastconv's softplus.
    pos = g.op("Relu", [x], f"{name}/relu")
    neg_abs = g.op("Neg", [g.op("Abs", [x], f"{name}/abs")], f"{name}/neg")
    log1p = g.op("Log", [g.op("Add", [g.op("Exp", [neg_abs], f"{name}/exp"), _scalar(g, 1.0, f"{name}/one")],
                               f"{name}/add1")], f"{name}/log")
    return g.op("Add", [pos, log1p], f"{name}/softplus")


def _gelu(g, x, name, approximate=False):
    half = _scalar(g, 0.5, f"{name}/half")
    one = _scalar(g, 1.0, f"{name}/one")
    if approximate:
        cube = g.op("Mul", [g.op("Mul", [x, x], f"{name}/sq"), x], f"{name}/cube")
        inner = g.op("Add", [x, _mul(g, cube, _scalar(g, 0.044715, f"{name}/c"), f"{name}/cubec")], f"{name}/inner")
        t = g.op("Tanh", [_mul(g, inner, _scalar(g, math.sqrt(2.0 / math.pi), f"{name}/k"), f"{name}/scaled")],
                 f"{name}/tanh")
    else:
        t = g.op("Erf", [_mul(g, x, _scalar(g, 1.0 / math.sqrt(2.0), f"{name}/rsqrt2"), f"{name}/scaled")],
                 f"{name}/erf")
    return _mul(g, _mul(g, x, g.op("Add", [t, one], f"{name}/plus1"), f"{name}/xmul"), half, f"{name}/gelu")


def _elementwise(g, x, act, name):
    """The ONNX nodes for activation name `act` on tensor name x; None when unknown."""
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "exponential": "Exp", "softsign": "Softsign"}
    if act in simple:
        return g.op(simple[act], [x], f"{name}/{act}")
    if act == "relu6":
        return g.op("Clip", [x, _scalar(g, 0.0, f"{name}/lo"), _scalar(g, 6.0, f"{name}/hi")], f"{name}/relu6")
    if act == "elu":
        return g.op("Elu", [x], f"{name}/elu", alpha=1.0)
    if act == "selu":
        return g.op("Selu", [x], f"{name}/selu", alpha=SELU_ALPHA, gamma=SELU_SCALE)
    if act == "leaky_relu":
        return g.op("LeakyRelu", [x], f"{name}/leaky_relu", alpha=0.2)
    if act == "gelu":
        return _gelu(g, x, name)
    if act == "silu":
        return _mul(g, x, g.op("Sigmoid", [x], f"{name}/sigmoid"), f"{name}/silu")
    if act == "hard_sigmoid":
        return g.op("HardSigmoid", [x], f"{name}/hard_sigmoid", alpha=1.0 / 6.0, beta=0.5)
    if act == "hard_silu":
        return g.op("HardSwish", [x], f"{name}/hard_silu")
    if act == "softplus":
        return _softplus(g, x, name)
    if act == "mish":
        return _mul(g, x, g.op("Tanh", [_softplus(g, x, name)], f"{name}/tanh"), f"{name}/mish")
    return None


def apply_activation(g, value, act, layer, axis=-1):
    """activation `act` (a name from layers.activation.resolve) on Value `value`."""
    if act == "linear":
        return value
    if act in ("softmax", "log_softmax"):
        op = "Softmax" if act == "softmax" else "LogSoftmax"
        return Value(g.op(op, [value.name], f"{layer.name}/{act}", axis=value.nchw_axis(axis)),
                     value.layout, value.shape)
    out = _elementwise(g, value.name, act, layer.name) if isinstance(act, str) else None
    if out is None:
        raise unsupported(layer, f"its activation {act!r} has no ONNX form (a custom callable cannot be "
                                 "exported; use a named activation of fastconv.activations)")
    return Value(out, value.layout, value.shape)


def _where_below(g, x, threshold, below, layer):
    """x where x >= threshold, else `below` (a tensor name): the Keras comparison, so NaN takes
    the `below` branch, which stays NaN."""
    keep = g.op("GreaterOrEqual", [x, _scalar(g, threshold, f"{layer.name}/threshold")], f"{layer.name}/ge")
    return g.op("Where", [keep, x, below], f"{layer.name}/where")


@register(Activation)
def _activation(g, layer, x):
    return apply_activation(g, x, layer.activation, layer)


@register(Softmax)
def _softmax(g, layer, x):
    return apply_activation(g, x, "softmax", layer, axis=layer.axis)


@register(ReLU)
def _relu(g, layer, x):
    if layer.negative_slope == 0.0 and layer.threshold == 0.0:
        if layer.max_value is not None:
            return Value(g.op("Clip", [x.name, _scalar(g, 0.0, f"{layer.name}/lo"),
                                       _scalar(g, layer.max_value, f"{layer.name}/hi")], f"{layer.name}/relu"),
                         x.layout, x.shape)
        return Value(g.op("Relu", [x.name], f"{layer.name}/relu"), x.layout, x.shape)
    shifted = g.op("Sub", [x.name, _scalar(g, layer.threshold, f"{layer.name}/t")], f"{layer.name}/shift")
    below = _mul(g, shifted, _scalar(g, layer.negative_slope, f"{layer.name}/slope"), f"{layer.name}/below")
    y = _where_below(g, x.name, layer.threshold, below, layer)
    if layer.max_value is not None:
        y = g.op("Min", [y, _scalar(g, layer.max_value, f"{layer.name}/max")], f"{layer.name}/cap")
    return Value(y, x.layout, x.shape)


@register(LeakyReLU)
def _leaky_relu(g, layer, x):
    return Value(g.op("LeakyRelu", [x.name], f"{layer.name}/leaky_relu", alpha=layer.negative_slope),
                 x.layout, x.shape)


@register(ELU)
def _elu(g, layer, x):
    return Value(g.op("Elu", [x.name], f"{layer.name}/elu", alpha=layer.alpha), x.layout, x.shape)


@register(PReLU)
def _prelu(g, layer, x):
    slope = g.broadcast_const(x, layer.alpha.numpy(), f"{layer.name}/alpha")
    below = _mul(g, x.name, slope, f"{layer.name}/below")
    return Value(_where_below(g, x.name, 0.0, below, layer), x.layout, x.shape)
