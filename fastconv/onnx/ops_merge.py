"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate.

The inputs are brought to one layout first (NCHW when they are all images, so a residual join
costs no transpose); Concatenate's Keras axis is mapped to where it sits in that layout.
Max and Min propagate NaN in onnxruntime, as np.maximum does in fastconv.
"""
import numpy as np

from ..layers.merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from .graph import Value
from .registry import register

_OPS = {Add: "Sum", Multiply: "Mul", Maximum: "Max", Minimum: "Min", Subtract: "Sub", Average: "Sum"}


def _fold(g, op, names, name):
    # Mul and Sub are binary in ONNX; Sum, Max and Min take any number of inputs.
    if op in ("Sum", "Max", "Min"):
        return g.op(op, names, f"{name}/{op.lower()}") if len(names) > 1 else names[0]
    out = names[0]
    for i, other in enumerate(names[1:]):
        out = g.op(op, [out, other], f"{name}/{op.lower()}{i}")
    return out


@register(Add, Subtract, Multiply, Average, Maximum, Minimum)
def _elementwise(g, layer, inputs):
    values = g.same_layout(list(inputs))
    y = _fold(g, _OPS[type(layer)], [v.name for v in values], layer.name)
    if isinstance(layer, Average):
        y = g.op("Mul", [y, g.const(np.float32(1.0 / len(values)), f"{layer.name}/inv_n")], f"{layer.name}/mean")
    # Keras's Multiply/Add broadcast (e.g. a squeeze-and-excitation scale (N, 1, 1, C)); ONNX's too.
    return Value(y, values[0].layout, layer.compute_output_shape([v.shape for v in values]))


@register(Concatenate)
def _concatenate(g, layer, inputs):
    values = g.same_layout(list(inputs))
    axis = values[0].nchw_axis(layer.axis)
    y = g.op("Concat", [v.name for v in values], f"{layer.name}/concat", axis=axis)
    return Value(y, values[0].layout, layer.compute_output_shape([v.shape for v in values]))
