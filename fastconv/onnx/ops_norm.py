"""Normalisation and rescaling at inference: BatchNormalization (moving statistics),
Rescaling, Normalization, and LayerNormalization.

BatchNormalization on the channels of an image (or the features of a (N, C) batch) is ONNX's
BatchNormalization node; on any other axis it is the same formula written as Mul and Add with
constants shaped to broadcast on that axis.
"""
import numpy as np

from ..layers.batch_normalization import BatchNormalization
from ..layers.layer_normalization import LayerNormalization
from ..layers.normalization import EPSILON, Normalization
from ..layers.rescaling import Rescaling
from .graph import Value
from .ops_conv import weights
from .registry import register


@register(BatchNormalization)
def _batch_normalization(g, layer, x):
    mean, var = weights(layer.moving_mean), weights(layer.moving_variance)
    gamma = weights(layer.gamma) if layer.gamma is not None else np.ones_like(mean)
    beta = weights(layer.beta) if layer.beta is not None else np.zeros_like(mean)
    axis = layer.axis % x.ndim
    name = layer.name
    if x.ndim in (2, 4) and axis == x.ndim - 1:
        if x.ndim == 4:
            x = g.as_nchw(x, name)
        inputs = [x.name] + [g.const(a, f"{name}/{n}") for a, n in
                             ((gamma, "gamma"), (beta, "beta"), (mean, "moving_mean"), (var, "moving_variance"))]
        y = g.op("BatchNormalization", inputs, f"{name}/batch_norm", epsilon=layer.epsilon)
        return Value(y, x.layout, x.shape)
    x = g.as_keras(x)
    shape = [1] * x.ndim
    shape[axis] = mean.shape[0]
    scale = gamma / np.sqrt(var + np.float32(layer.epsilon))
    shift = beta - mean * scale
    y = g.op("Mul", [x.name, g.const(scale.reshape(shape), f"{name}/scale")], f"{name}/scale")
    y = g.op("Add", [y, g.const(shift.reshape(shape), f"{name}/shift")], f"{name}/shift")
    return Value(y, "keras", x.shape)


@register(Rescaling)
def _rescaling(g, layer, x):
    y = g.op("Mul", [x.name, g.broadcast_const(x, layer.scale, f"{layer.name}/scale")], f"{layer.name}/scale")
    if not (np.ndim(layer.offset) == 0 and float(layer.offset) == 0.0):
        y = g.op("Add", [y, g.broadcast_const(x, layer.offset, f"{layer.name}/offset")], f"{layer.name}/offset")
    return Value(y, x.layout, x.shape)


@register(Normalization)
def _normalization(g, layer, x):
    bshape = (1,) + tuple(layer._bshape[1:])
    mean = np.asarray(layer.mean.numpy(), np.float32).reshape(bshape)
    std = np.maximum(np.sqrt(np.asarray(layer.variance.numpy(), np.float32)), np.float32(EPSILON)).reshape(bshape)
    mean_c, std_c = g.broadcast_const(x, mean, f"{layer.name}/mean"), g.broadcast_const(x, std, f"{layer.name}/std")
    if layer.invert:
        y = g.op("Add", [g.op("Mul", [x.name, std_c], f"{layer.name}/mul"), mean_c], f"{layer.name}/add")
    else:
        y = g.op("Div", [g.op("Sub", [x.name, mean_c], f"{layer.name}/sub"), std_c], f"{layer.name}/div")
    return Value(y, x.layout, x.shape)


@register(LayerNormalization)
def _layer_normalization(g, layer, x):
    # Written out (ReduceMean, not opset 17's LayerNormalization node) so that opsets 14-16
    # and axes that are not the last ones work alike; the biased variance, as Keras.
    name = layer.name
    axes = sorted(x.nchw_axis(a) for a in layer._axes)
    mean = g.op("ReduceMean", [x.name], f"{name}/mean", axes=axes, keepdims=1)
    centred = g.op("Sub", [x.name, mean], f"{name}/centred")
    var = g.op("ReduceMean", [g.op("Mul", [centred, centred], f"{name}/square")], f"{name}/var", axes=axes,
               keepdims=1)
    std = g.op("Sqrt", [g.op("Add", [var, g.const(np.float32(layer.epsilon), f"{name}/epsilon")], f"{name}/var_eps")],
               f"{name}/std")
    y = g.op("Div", [centred, std], f"{name}/normalised")
    if layer.gamma is not None:
        y = g.op("Mul", [y, g.broadcast_const(x, weights(layer.gamma).reshape(layer._bshape), f"{name}/gamma")],
                 f"{name}/scale")
    if layer.beta is not None:
        y = g.op("Add", [y, g.broadcast_const(x, weights(layer.beta).reshape(layer._bshape), f"{name}/beta")],
                 f"{name}/shift")
    return Value(y, x.layout, x.shape)
