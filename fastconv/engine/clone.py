"""clone_model: a new model of the same architecture with freshly initialised weights (Keras 3).

Sequential and functional models are rebuilt layer by layer: each layer goes through
`clone_function` (default: `layer.__class__.from_config(layer.get_config())`, a new layer with
the same settings and name, not built), and the new layers are called on new Inputs (or the
given `input_tensors`) the way the old ones were, so shared layers stay shared. A subclassed
model goes through its config, as Keras does: it must have a working get_config/from_config,
and `clone_function`/`input_tensors` are refused for it.

>>> from fastconv import layers, models
>>> m = models.Sequential([layers.Input((4,)), layers.Dense(3)])
>>> c = models.clone_model(m)
>>> c.count_params() == m.count_params(), c.layers[0] is m.layers[0]
(True, False)
"""
from ..layers.input_layer import InputLayer, KerasTensor
from ..layers.layer import Layer, flatten, map_structure
from ..saving.serialization import deserialize, serialize
from .functional import Functional
from .sequential import Sequential


def _clone_layer(layer):
    return layer.__class__.from_config(layer.get_config())


def _checked(clone_function, layer):
    new = clone_function(layer)
    if not isinstance(new, Layer):
        raise ValueError(f"clone_model: clone_function must return a Layer, got {type(new).__name__} "
                         f"for layer {layer.name!r}")
    return new


def _as_input_tensors(input_tensors, count):
    tensors = flatten(input_tensors) if isinstance(input_tensors, (list, tuple, dict)) else [input_tensors]
    if len(tensors) != count or not all(isinstance(t, KerasTensor) for t in tensors):
        raise ValueError(f"clone_model: input_tensors must be {count} symbolic tensor(s) from keras.Input "
                         f"(one per model input), got {input_tensors!r}")
    return tensors


def _clone_sequential(model, input_tensors, clone_function):
    new_layers = [_checked(clone_function, layer) for layer in model._tracked]
    shape, name = model._input_batch_shape, None
    if model._input_layer is not None:
        name = model._input_layer.name
    if input_tensors is not None:
        shape = _as_input_tensors(input_tensors, 1)[0].shape
    first = [] if shape is None else [InputLayer(batch_shape=shape, name=name)]
    return Sequential(first + new_layers, name=model.name, trainable=model.trainable)


def _clone_functional(model, input_tensors, clone_function):
    if input_tensors is not None:
        new_inputs = _as_input_tensors(input_tensors, len(model._input_tensors))
        for old, new in zip(model._input_tensors, new_inputs):
            if tuple(old.shape[1:]) != tuple(new.shape[1:]):
                raise ValueError(f"clone_model: input tensor of shape {new.shape} does not fit model input "
                                 f"{old._history[0].layer.name!r} of shape {old.shape}")
    else:
        new_inputs = [InputLayer(batch_shape=t.shape, dtype=t.dtype, name=t._history[0].layer.name).output
                      for t in model._input_tensors]
    tensors = {id(old): new for old, new in zip(model._input_tensors, new_inputs)}
    layers = {}

    def new_tensor(value):
        return tensors[id(value)] if isinstance(value, KerasTensor) else value

    for node in model._nodes:  # parents before children
        if isinstance(node.layer, InputLayer):
            continue
        layer = layers.get(id(node.layer))
        if layer is None:  # a shared layer is cloned once and keeps being shared
            layer = layers[id(node.layer)] = _checked(clone_function, node.layer)
        args = map_structure(new_tensor, node.inputs)
        out = layer(args, *map_structure(new_tensor, list(node.args)),
                    **{k: new_tensor(v) for k, v in node.kwargs.items()})
        for old, new in zip(flatten(node.outputs), flatten(out)):
            tensors[id(old)] = new
    inputs = map_structure(lambda t: tensors[id(t)], model._inputs_struct)
    outputs = map_structure(lambda t: tensors[id(t)], model._outputs_struct)
    return Functional(inputs, outputs, name=model.name, trainable=model.trainable)


def clone_model(model, input_tensors=None, clone_function=None, **kwargs):
    """A new model like `model` with new, freshly initialised weights (nothing is shared)."""
    from .model import Model
    if kwargs:
        raise TypeError(f"clone_model: unexpected arguments {sorted(kwargs)}")
    if not isinstance(model, Model):
        raise ValueError(f"clone_model: model must be a fastconv Model, got {type(model).__name__}")
    if clone_function is not None and not callable(clone_function):
        raise ValueError(f"clone_model: clone_function must be callable, got {clone_function!r}")
    if isinstance(model, Sequential):
        return _clone_sequential(model, input_tensors, clone_function or _clone_layer)
    if isinstance(model, Functional):
        return _clone_functional(model, input_tensors, clone_function or _clone_layer)
    if clone_function is not None or input_tensors is not None:
        raise ValueError(f"clone_model: clone_function and input_tensors are only supported for Sequential "
                         f"and functional models; {type(model).__name__} is a subclassed model")
    # A subclassed model: through its config, its own class standing in for a registration.
    try:
        return deserialize(serialize(model), custom_objects={type(model).__name__: type(model)})
    except (TypeError, ValueError) as e:
        raise ValueError(f"clone_model: cannot clone subclassed model {type(model).__name__}: {e}. "
                         f"Give the class get_config() (returning its constructor arguments) and, if needed, "
                         f"from_config(), or register it with @keras.saving.register_keras_serializable()") from None
