"""Functional: a model defined by a graph of layer calls from Input tensors to outputs.

>>> from fastconv import layers, models
>>> x = layers.Input((8,)); h = layers.Dense(4, activation="relu")(x)
>>> m = models.Model(x, layers.add([h, layers.Dense(4)(x)]))
>>> m.count_params(), m.output_shape
(72, (None, 4))

A tensor may feed several layers (residual graphs), and a layer may be called on several
tensors (shared weights, counted once).
"""
from ..layers.input_layer import InputLayer, KerasTensor
from ..layers.layer import _training_ctx, flatten, map_structure
from . import fusion
from .model import Model


def _topological_nodes(outputs):
    """Every node the outputs depend on, parents before children."""
    order, state = [], {}
    for out in outputs:
        stack = [(out._history[0], False)]
        while stack:
            node, done = stack.pop()
            if done:
                if state.get(id(node)) != "done":
                    state[id(node)] = "done"
                    order.append(node)
                continue
            if id(node) in state:
                continue
            state[id(node)] = "open"
            stack.append((node, True))
            for parent in reversed(node.parents):
                if id(parent) not in state:
                    stack.append((parent, False))
    return order


def _keras_layer_order(nodes, outputs):
    """The layers of `nodes` (parents before children) in Keras 3's order, so that layer lists,
    weight order and files written by order match Keras's: by depth (the longest path to an
    output) decreasing, ties broken by when a depth-first walk from the outputs, parents in
    input order, first reaches the layer."""
    first_seen, done = {}, set()
    for out in outputs:
        stack = [out._history[0]]
        while stack:
            node = stack.pop()
            if id(node) in done:
                continue
            done.add(id(node))
            first_seen.setdefault(id(node.layer), len(first_seen))
            stack.extend(reversed(node.parents))
    node_depth, layer_depth = {}, {}
    for node in reversed(nodes):  # children before parents
        depth = max(node_depth.get(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = node_depth[id(node)] = depth
        for parent in node.parents:
            node_depth[id(parent)] = max(node_depth.get(id(parent), 0), depth + 1)
    layers = {id(n.layer): n.layer for n in nodes}
    return sorted(layers.values(), key=lambda l: (-layer_depth[id(l)], first_seen[id(l)]))


class Functional(Model):
    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        Model.__init__(self, name=name, trainable=trainable, **kwargs)
        for role, struct in (("inputs", inputs), ("outputs", outputs)):
            for t in flatten(struct):
                if not isinstance(t, KerasTensor) or t._history is None:
                    raise TypeError(f"Model {role} must be symbolic tensors from layers.Input(...) and layer "
                                    f"calls on them, got {type(t).__name__}")
        self._inputs_struct, self._outputs_struct = inputs, outputs
        self._input_tensors, self._output_tensors = flatten(inputs), flatten(outputs)
        for t in self._input_tensors:
            if not isinstance(t._history[0].layer, InputLayer):
                raise ValueError(f"Model inputs must come straight from layers.Input, got {t} "
                                 f"(produced by layer {t._history[0].layer.name!r})")
        self._nodes = _topological_nodes(self._output_tensors)
        known = {id(t) for t in self._input_tensors}
        for node in self._nodes:
            if isinstance(node.layer, InputLayer) and id(node.outputs) not in known:
                raise ValueError(f"graph disconnected: the outputs depend on input {node.layer.name!r}, "
                                 f"which is not among the model's inputs "
                                 f"{[t._history[0].layer.name for t in self._input_tensors]}")
        self._tracked = _keras_layer_order(self._nodes, self._output_tensors)
        self.built = True
        self._build_shape = [t.shape for t in self._input_tensors]
        if len(self._build_shape) == 1:
            self._build_shape = self._build_shape[0]
        self._output_shape = map_structure(lambda t: t.shape, outputs)

    @property
    def inputs(self):
        return list(self._input_tensors)

    @property
    def outputs(self):
        return list(self._output_tensors)

    def _input_spec(self):
        return [t.shape for t in self._input_tensors]

    def _run(self, values, apply, plan=None):
        """Evaluate the graph: `values` maps id(input KerasTensor) -> value; apply(node, args,
        chain). plan: {id(node): (Chain, last node)} from _fusion; a chain's other nodes are
        skipped ((None, None)) and its result is the last node's output."""
        plan = plan or {}
        for node in self._nodes:
            chain, last = plan.get(id(node), (None, node))
            if isinstance(node.layer, InputLayer) or last is None:
                continue
            args = map_structure(lambda t: values[id(t)] if isinstance(t, KerasTensor) else t, node.inputs)
            out = apply(node, args, chain)
            # Outputs are matched one level deep: a shape is itself a tuple, so no deep flatten.
            outs = [out] if isinstance(last.outputs, KerasTensor) else list(out)
            for t, v in zip(flatten(last.outputs), outs):
                values[id(t)] = v
        return map_structure(lambda t: values[id(t)], self._outputs_struct)

    def _fusion(self, training):
        """{id(node): (Chain, last node)} for the head of each fusable chain, (None, None) for
        the nodes it absorbs. A link must be the only consumer of the previous link's output."""
        if not fusion.get_fusion():
            return {}
        consumers, model_outputs = {}, {id(t) for t in self._output_tensors}
        for node in self._nodes:
            for t in flatten(node.inputs):
                if isinstance(t, KerasTensor):
                    consumers.setdefault(id(t), []).append(node)

        def next_node(node):
            outs = flatten(node.outputs)
            users = consumers.get(id(outs[0]), []) if len(outs) == 1 else []
            if len(users) != 1 or id(outs[0]) in model_outputs:
                return None
            user = users[0]
            return user if len(flatten(user.inputs)) == 1 and not user.args else None

        plan = {}
        for node in self._nodes:
            if id(node) in plan:
                continue
            run = [node]
            while len(run) < 4 and run[-1] is not None:  # the longest chain: pad, conv, BN, ReLU
                run.append(next_node(run[-1]))
            run = [n for n in run if n is not None]
            chain = fusion.chain_from(lambda j: (run[j].layer, run[j].kwargs) if j < len(run) else None,
                                      training)
            if chain is not None:
                members = run[:len(chain.links)]
                plan[id(node)] = (chain, members[-1])
                plan.update({id(n): (None, None) for n in members[1:]})
        return plan

    def call(self, inputs, training=None):
        given = flatten(inputs)
        values = {id(t): v for t, v in zip(self._input_tensors, given)}
        # An unset mode (None in the call context) reaches the layers as None, so each takes its
        # own default (the augmentation layers augment, as in Keras 3).
        passed = training or _training_ctx.get()

        def apply(node, args, chain):
            kwargs = dict(node.kwargs)
            # training fixed at graph construction (e.g. a frozen base called with
            # training=False) wins over the training mode of this call.
            kwargs.setdefault("training", passed)
            if chain is not None:
                return chain(args, node.args, kwargs)
            return node.layer(args, *node.args, **kwargs)
        plan = self._fusion(bool(_training_ctx.get() if training is None else training))
        return self._run(values, apply, plan)

    def get_config(self):
        """The graph as data (engine/graph_config.py): layers, their calls, inputs, outputs."""
        from .graph_config import graph_config
        return graph_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .graph_config import rebuild_graph
        inputs, outputs = rebuild_graph(config, custom_objects)
        return cls(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        values = {id(t): tuple(s) for t, s in zip(self._input_tensors, shapes)}
        return self._run(values, lambda node, args, chain: node.layer.compute_output_shape(args))
