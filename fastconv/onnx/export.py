"""export(model, path, opset=17, batch_size=None): write a Sequential or functional model as an
ONNX file that onnxruntime runs with the model's own NHWC inputs.

The graph takes the inputs exactly as `model.predict` does (NHWC float32, batch axis dynamic
unless `batch_size` is given), transposes images to NCHW once inside, and returns the outputs in
the model's layout (images back in NHWC). Weights are initializers; the computation is the
inference one (BatchNormalization's moving statistics, Dropout as the identity). The file is
checked with onnx.checker before it is written, and written atomically.

>>> import fastconv, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "lenet.onnx")
>>> proto = fastconv.onnx.export(fastconv.models.lenet5(), path)
>>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
(['input'], ['output'])
"""
import os

from ..engine.functional import Functional
from ..engine.model import Model
from ..engine.sequential import Sequential
from ..layers.layer import flatten
from ..saving.atomic import atomic_write
from . import (ops_activation, ops_conv, ops_merge, ops_models, ops_norm, ops_pool,  # noqa: F401 (they register)
               ops_preprocessing, ops_shape)
from .graph import GraphBuilder, Value
from .ops_models import export_graph
from .registry import export_sequence

OPSETS = range(14, 18)  # what the exporter emits and tests; onnxruntime >= 1.16 (the extra) runs them all
# A protobuf message is at most 2 GiB; larger weights would need ONNX's external-data files.
MAX_WEIGHT_BYTES = 2 ** 31 - 2 ** 24


def require_onnx():
    try:
        import onnx
        import onnx.checker
        import onnx.numpy_helper  # noqa: F401
    except ImportError as e:
        raise ImportError("fastconv.onnx.export needs the 'onnx' package: pip install 'fastconv[onnx]' "
                          f"(onnx and onnxruntime); import failed with: {e}") from None
    return onnx


def _check_arguments(model, path, opset, batch_size):
    if not isinstance(model, Model):
        raise TypeError(f"export: model must be a fastconv Model (Sequential or functional), got "
                        f"{type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"export: path must be a str or os.PathLike, got {type(path).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in OPSETS:
        raise ValueError(f"export: opset must be an int from {OPSETS.start} to {OPSETS.stop - 1}, got {opset!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"export: batch_size must be None (dynamic) or a positive int, got {batch_size!r}")
    if str(model.dtype) != "float32":
        raise ValueError(f"export: the model computes in {model.dtype}; ONNX export writes float32 models only")


def _input_shapes(model):
    if isinstance(model, Functional):
        return [(t._history[0].layer.name, t.shape) for t in model._input_tensors]
    if isinstance(model, Sequential):
        if model._input_batch_shape is None or not model.built:
            raise ValueError(f"export: Sequential model {model.name!r} has no input shape yet; start it with "
                             "layers.Input(shape) or call model.build((None, H, W, C)) first")
        return [("input", model._input_batch_shape)]
    raise TypeError(f"export: model {model.name!r} is a subclassed {type(model).__name__}, whose call() is Python "
                    "code the exporter cannot read; build it as a Sequential or functional model to export it")


def build_model_proto(model, opset=17, batch_size=None):
    """The onnx.ModelProto of `model` (see `export`), checked, not written."""
    onnx = require_onnx()
    _check_arguments(model, "", opset, batch_size)
    g = GraphBuilder(onnx, opset)
    helper, float32 = onnx.helper, onnx.TensorProto.FLOAT
    batch = "batch" if batch_size is None else batch_size

    def value_info(name, shape):
        dims = [batch] + [f"{name}_dim{i}" if s is None else s for i, s in enumerate(shape[1:], 1)]
        return helper.make_tensor_value_info(name, float32, dims)

    inputs, graph_inputs = [], []
    for name, shape in _input_shapes(model):
        name = g.unique(name)
        inputs.append(Value(name, "keras", shape))
        graph_inputs.append(value_info(name, shape))
    if isinstance(model, Functional):
        outputs = flatten(export_graph(g, model, inputs))
        names = [t._history[0].layer.name for t in model._output_tensors]
    else:
        outputs, names = [export_sequence(g, model._tracked, inputs[0])], ["output"]
    graph_outputs = []
    for value, name in zip(outputs, names):
        # Every output leaves in the model's own layout, under its layer's name.
        out = g.op("Identity", [g.as_keras(value).name], f"{name}/output", output_name=name)
        graph_outputs.append(value_info(out, value.shape))
    size = sum(len(t.raw_data) for t in g.initializers)
    if size > MAX_WEIGHT_BYTES:
        raise ValueError(f"export: model {model.name!r} has {size / 2 ** 30:.2f} GiB of weights; an ONNX file "
                         "holds at most 2 GiB without external data files, which this exporter does not write")
    graph = helper.make_graph(g.nodes, model.name, graph_inputs, graph_outputs, initializer=g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    from .. import __version__
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastconv",
                              producer_version=__version__, ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(proto)
    return proto


def export(model, path, opset=17, batch_size=None):
    """Write `model` as an ONNX file at `path` (atomically) and return the onnx.ModelProto.

    opset: 14 to 17 (default 17). batch_size: None for a dynamic batch axis, or a fixed int.
    A layer without an exporter raises UnsupportedLayerError (a ValueError) naming the layer
    and its type; nothing is written then."""
    _check_arguments(model, path, opset, batch_size)
    proto = build_model_proto(model, opset, batch_size)
    data = proto.SerializeToString()
    with atomic_write(path, "wb") as f:
        f.write(data)
    return proto
