"""GraphBuilder: the ONNX graph under construction, and the layout bookkeeping the exporters share.

fastconv tensors are NHWC; ONNX's Conv, pooling and BatchNormalization are NCHW. Each value in
the graph therefore carries its `layout`: "nchw" (a rank-4 Keras tensor held transposed to
NCHW) or "keras" (exactly the Keras tensor). Exporters ask for the layout they need
(`as_nchw` / `as_keras`); the Transpose that converts is emitted once per value and reused, so a
chain of convolutions and pools runs entirely in NCHW and the graph transposes only where a
layer's meaning depends on the axis order (Flatten, Reshape, Dense on images) and at the ends.
"""
import numpy as np

# Where each NHWC axis sits in NCHW, and back.
NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)


class Value:
    """One tensor of the graph: its ONNX name, layout, and Keras shape (NHWC, batch None)."""

    def __init__(self, name, layout, shape):
        self.name, self.layout, self.shape = name, layout, tuple(shape)

    @property
    def ndim(self):
        return len(self.shape)

    def nchw_axis(self, axis):
        """The position in this value's ONNX tensor of Keras axis `axis` (negative allowed)."""
        axis %= self.ndim
        return NHWC_TO_NCHW.index(axis) if self.layout == "nchw" else axis


class GraphBuilder:
    def __init__(self, onnx_module, opset):
        self.onnx, self.opset = onnx_module, opset
        self.nodes, self.initializers = [], []
        self._names = set()
        self._converted = {}  # (value name, layout) -> Value, so each transpose happens once
        self._weights = {}  # (id(variable), form) -> initializer name: a shared layer's weights once

    def unique(self, base):
        base = "".join(c if c.isalnum() or c in "_./-" else "_" for c in str(base)) or "t"
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def const(self, array, name, dtype=np.float32):
        """An initializer holding `array` (weights travel as initializers, never as nodes)."""
        array = np.ascontiguousarray(np.asarray(array, dtype=dtype))
        tensor = self.onnx.numpy_helper.from_array(array, self.unique(name))
        self.initializers.append(tensor)
        return tensor.name

    def weight(self, variable, name, form="", convert=None):
        """An initializer holding a layer's variable (optionally `convert`ed, e.g. HWIO -> OIHW,
        `form` naming the conversion); a layer called several times stores it once."""
        key = (id(variable), form)
        if key not in self._weights:
            array = np.asarray(variable.numpy(), np.float32)
            self._weights[key] = self.const(array if convert is None else convert(array), name)
        return self._weights[key]

    def ints(self, values, name):
        return self.const(np.asarray(values, np.int64), name, np.int64)

    def op(self, op_type, inputs, name, outputs=1, output_name=None, **attrs):
        """Append one node; returns its output name (or names when outputs > 1). output_name:
        the (single) output's name, e.g. a graph output's."""
        node_name = self.unique(name)
        outs = [self.unique(f"{node_name}:{i}" if outputs > 1 else f"{node_name}:out") for i in range(outputs)]
        if output_name is not None:
            outs = [self.unique(output_name)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs, name=node_name, **attrs))
        return outs if outputs > 1 else outs[0]

    # -- layouts -----------------------------------------------------------------------------
    def as_nchw(self, value, what=""):
        if value.layout == "nchw":
            return value
        if value.ndim != 4:
            raise ValueError(f"{what or 'this layer'} needs an image input of rank 4 (N, H, W, C), got "
                             f"shape {value.shape}")
        return self._convert(value, "nchw", NHWC_TO_NCHW)

    def as_keras(self, value):
        return value if value.layout == "keras" else self._convert(value, "keras", NCHW_TO_NHWC)

    def _convert(self, value, layout, perm):
        key = (value.name, layout)
        if key not in self._converted:
            out = self.op("Transpose", [value.name], f"{value.name}_to_{layout}", perm=list(perm))
            self._converted[key] = Value(out, layout, value.shape)
        return self._converted[key]

    def same_layout(self, values):
        """The values in one common layout: NCHW when every one is a rank-4 image already in
        NCHW or convertible, else Keras's."""
        if all(v.layout == "nchw" for v in values):
            return values
        if all(v.ndim == 4 for v in values) and any(v.layout == "nchw" for v in values):
            return [self.as_nchw(v) for v in values]
        return [self.as_keras(v) for v in values]

    def broadcast_const(self, value, array, name):
        """An initializer of `array`, given as broadcasting against the Keras tensor of `value`
        (e.g. per-channel (C,) or (1, 1, C)), laid out to broadcast against `value` as held."""
        array = np.asarray(array, np.float32)
        if array.ndim == 0:
            return self.const(array, name)
        if array.ndim > value.ndim:
            raise ValueError(f"{name}: a constant of shape {array.shape} cannot broadcast against a "
                             f"tensor of shape {value.shape}")
        full = array.reshape((1,) * (value.ndim - array.ndim) + array.shape)
        if value.layout == "nchw":
            full = full.transpose(NHWC_TO_NCHW)
        return self.const(full, name)
