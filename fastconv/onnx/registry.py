"""The registry: layer class -> the function that writes that layer's ONNX nodes.

An exporter is ``fn(g, layer, x) -> Value`` (g: GraphBuilder; x: a Value, or a list of Values
for merge layers). `register(*classes)` adds one; `export_layer` dispatches. A subclass of a
registered class is exported as its parent only when it keeps the parent's ``call``: a
subclass that computes something else must not be silently written as its parent.
"""
_EXPORTERS = {}


def register(*classes):
    def decorate(fn):
        for cls in classes:
            _EXPORTERS[cls] = fn
        return fn
    return decorate


class UnsupportedLayerError(ValueError):
    """A layer that has no ONNX exporter (or a configuration of it that ONNX cannot express)."""


def exporter_for(layer):
    for cls in type(layer).__mro__:
        fn = _EXPORTERS.get(cls)
        if fn is not None:
            if getattr(type(layer), "call", None) is not getattr(cls, "call", None):
                break  # a subclass with its own call: refuse below
            return fn
    raise UnsupportedLayerError(
        f"cannot export layer {layer.name!r} of type {type(layer).__name__} to ONNX: no exporter is "
        f"registered for it (supported: {', '.join(sorted(c.__name__ for c in _EXPORTERS))})")


def export_layer(g, layer, x):
    return exporter_for(layer)(g, layer, x)


def export_sequence(g, layers, x):
    """Layers applied one after the other (a Sequential, or a block's own list of layers)."""
    for layer in layers or ():
        x = export_layer(g, layer, x)
    return x


def unsupported(layer, why):
    return UnsupportedLayerError(f"cannot export layer {layer.name!r} of type {type(layer).__name__} to "
                                 f"ONNX: {why}")


def supported_layers():
    """The names of the layer classes with an exporter (sorted)."""
    return sorted(c.__name__ for c in _EXPORTERS)
