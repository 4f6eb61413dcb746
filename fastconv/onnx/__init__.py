"""ONNX export: ``fastconv.onnx.export(model, "model.onnx")`` or ``model.export("model.onnx")``.

Needs the optional extra ``pip install 'fastconv[onnx]'`` (onnx, onnxruntime); `import fastconv`
never imports them. One exporter per layer type lives in the ops_* modules (by family) and is
found through `registry`; `supported_layers()` lists them.
"""
__all__ = ["export", "build_model_proto", "OPSETS", "UnsupportedLayerError", "supported_layers"]

from .export import OPSETS, build_model_proto, export  # noqa: F401
from .registry import UnsupportedLayerError, supported_layers  # noqa: F401
