"""The order in which Keras 3 lists a functional model's layers (`model.layers`), which is the
order its `.weights.h5` files number layers of a class by (conv2d, conv2d_1, ...).

fastconv's own graph order is parents-before-children depth first; Keras sorts operations by
depth (longest distance to an output, deepest first) and, within a depth, by the order a depth-
first walk from the outputs first reaches them. On a chain both agree; on branches (Inception
modules, shortcut convolutions) they differ, so writing a file Keras loads needs Keras's order.
"""


def keras_layer_order(model):
    """The layers of a fastconv Functional model in Keras 3's `model.layers` order."""
    outputs = model._output_tensors
    inputs = {id(t) for t in model._input_tensors}
    first_seen, finished, post_order = {}, set(), []

    # Depth-first walk from each output, emulating Keras's recursion exactly (a node is finished
    # once all its parents are; layers are numbered when first reached).
    for tensor in outputs:
        root = tensor._history[0]
        if id(root) in finished:
            continue
        stack = [(root, iter(_parents(root, inputs, tensor)))]
        first_seen.setdefault(id(root.layer), len(first_seen))
        while stack:
            node, parents = stack[-1]
            nxt = next(parents, None)
            if nxt is None:
                stack.pop()
                finished.add(id(node))
                post_order.append(node)
                continue
            parent_node, parent_tensor = nxt
            if id(parent_node) in finished or any(parent_node is n for n, _ in stack):
                continue
            first_seen.setdefault(id(parent_node.layer), len(first_seen))
            stack.append((parent_node, iter(_parents(parent_node, inputs, parent_tensor))))

    node_depth, layer_depth, layers = {}, {}, {}
    for node in reversed(post_order):  # outputs first
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        layers[id(node.layer)] = node.layer
        node_depth[id(node)] = depth
        for parent in node.parents:
            node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    return sorted(layers.values(), key=lambda l: (-layer_depth[id(l)], first_seen[id(l)]))


def _parents(node, inputs, tensor):
    """(parent node, tensor) pairs in call order; a model input stops the walk, as in Keras."""
    from ..layers.input_layer import KerasTensor
    from ..layers.layer import flatten
    if id(tensor) in inputs:
        return []
    return [(t._history[0], t) for t in flatten(node.inputs) if isinstance(t, KerasTensor)]
