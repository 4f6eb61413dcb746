"""A functional model's graph as JSON data, and the graph rebuilt from it.

The config lists every layer once (serialized, with its name) together with its
``inbound_nodes``: the calls of that layer inside this model, each as the structure of its
input tensors, extra positional arguments and keyword arguments. A tensor is a reference
``{"class_name": "__keras_tensor__", "config": {"keras_history": [layer name, node index,
tensor index]}}`` (Keras 3's spelling): node index counts that layer's calls within this model
(an InputLayer's own node is 0), tensor index counts the node's flattened outputs. Rebuilding
calls each layer on the tensors its node names, as soon as they exist, so the order in the
file does not matter; shared layers (several nodes) and merges (several inputs) rebuild as
they were.
"""
from ..layers.input_layer import InputLayer, KerasTensor
from ..layers.layer import flatten
from ..saving.serialization import deserialize, deserialize_value, serialize, serialize_value

_TENSOR = "__keras_tensor__"


def _node_ids(nodes):
    """{id(node): (layer name, node index)} for the model's nodes, checking names are unique."""
    ids, counts, owners = {}, {}, {}
    for node in nodes:
        name = node.layer.name
        if owners.setdefault(name, node.layer) is not node.layer:
            raise ValueError(f"cannot save the model: two different layers are both named {name!r}; "
                             f"layer names must be unique within a model")
        ids[id(node)] = (name, counts.get(name, 0))
        counts[name] = counts.get(name, 0) + 1
    return ids


def _encode(structure, ids):
    if isinstance(structure, KerasTensor):
        node, index = structure._history
        if id(node) not in ids:
            raise ValueError(f"cannot save the model: tensor {structure} comes from outside its graph")
        name, k = ids[id(node)]
        return {"class_name": _TENSOR, "config": {"keras_history": [name, k, index]}}
    if isinstance(structure, (list, tuple)):
        return [_encode(s, ids) for s in structure]
    if isinstance(structure, dict):
        return {str(k): _encode(v, ids) for k, v in structure.items()}
    return serialize_value(structure, "a layer call's argument")


def graph_config(model):
    """The layers, nodes, inputs and outputs of a Functional model as JSON data."""
    ids = _node_ids(model._nodes)
    entries, by_name = [], {}
    for node in model._nodes:
        name = node.layer.name
        if name not in by_name:
            by_name[name] = {**serialize(node.layer), "name": name, "inbound_nodes": []}
            entries.append(by_name[name])
        if not isinstance(node.layer, InputLayer):
            by_name[name]["inbound_nodes"].append({"args": _encode(node.inputs, ids),
                                                   "call_args": _encode(list(node.args), ids),
                                                   "kwargs": _encode(node.kwargs, ids)})
    return {"name": model.name, "trainable": model.trainable, "layers": entries,
            "input_layers": _encode(model._inputs_struct, ids),
            "output_layers": _encode(model._outputs_struct, ids)}


class _Missing(Exception):
    """A node's input tensor does not exist yet."""


def _decode(structure, outputs, custom_objects):
    if isinstance(structure, dict) and structure.get("class_name") == _TENSOR:
        history = structure.get("config", {}).get("keras_history")
        if not (isinstance(history, list) and len(history) == 3):
            raise ValueError(f"corrupt model config: bad tensor reference {structure!r}")
        name, k, index = history
        if (name, k) not in outputs:
            raise _Missing((name, k))
        tensors = outputs[(name, k)]
        if not isinstance(index, int) or not 0 <= index < len(tensors):
            raise ValueError(f"corrupt model config: tensor {index} of node {k} of layer {name!r} does not exist")
        return tensors[index]
    if isinstance(structure, list):
        return [_decode(s, outputs, custom_objects) for s in structure]
    if isinstance(structure, dict) and not ("class_name" in structure and "config" in structure):
        return {k: _decode(v, outputs, custom_objects) for k, v in structure.items()}
    return deserialize_value(structure, custom_objects)


def rebuild_graph(config, custom_objects=None):
    """(inputs, outputs) structures of KerasTensors rebuilt from `graph_config` data."""
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise ValueError("corrupt model config: 'layers' must be a list")
    layers, outputs, pending = {}, {}, []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"corrupt model config: bad layer entry {str(entry)[:200]}")
        layer = deserialize({k: entry.get(k) for k in ("module", "class_name", "config", "registered_name")},
                            custom_objects)
        layers[entry["name"]] = layer
        if isinstance(layer, InputLayer):
            outputs[(entry["name"], 0)] = [layer.output]
        for k, node in enumerate(entry.get("inbound_nodes") or []):
            pending.append((entry["name"], k, node))
    while pending:
        waiting = []
        for name, k, node in pending:
            try:
                args = _decode(node.get("args"), outputs, custom_objects)
                call_args = _decode(node.get("call_args") or [], outputs, custom_objects)
                kwargs = _decode(node.get("kwargs") or {}, outputs, custom_objects)
            except _Missing:
                waiting.append((name, k, node))
                continue
            outputs[(name, k)] = flatten(layers[name](args, *call_args, **kwargs))
        if len(waiting) == len(pending):
            raise ValueError("corrupt model config: these layer calls need tensors no layer produces: "
                             + ", ".join(f"{name} (node {k})" for name, k, _ in waiting))
        pending = waiting
    try:
        return (_decode(config.get("input_layers"), outputs, custom_objects),
                _decode(config.get("output_layers"), outputs, custom_objects))
    except _Missing as e:
        raise ValueError(f"corrupt model config: the model's inputs/outputs name a missing tensor {e}") from None
