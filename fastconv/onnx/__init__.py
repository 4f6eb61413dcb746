"""ONNX export: ``fastconv.onnx.export(model, "model.onnx")`` or ``model.export("model.onnx")``.

Needs the optional extra ``pip install 'fastconv[onnx]'`` (onnx, onnxruntime); `import fastconv`
never imports them. One exporter per layer type lives in the ops_* modules (by family) and is
found through `registry`; `supported_layers()` lists them.

A custom layer gets an exporter with `register`: ``fn(g, layer, x)`` receives the GraphBuilder,
the layer and its input Value (a list for several inputs) and returns the output Value; see
graph.py for the layout rules (``g.as_keras(x)`` gives the input exactly as the layer sees it).
"""
__all__ = ["export", "build_model_proto", "OPSETS", "UnsupportedLayerError", "supported_layers", "register",
           "Value"]

from .export import OPSETS, build_model_proto, export  # noqa: F401
from .graph import Value  # noqa: F401
from .registry import UnsupportedLayerError, register, supported_layers  # noqa: F401
