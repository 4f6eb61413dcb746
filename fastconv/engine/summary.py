"""Model.summary(): the table Keras 3 prints, character for character (checked against real
Keras 3.15 output in tests/golden/keras_summaries/).

What Keras 3 prints, and so what this prints:
- Sequential and subclassed models list `model.layers`; a functional model lists its
  operations, InputLayer first, ordered by depth from the output as Keras orders them.
- "Connected to" appears when the graph is not a chain: a node with several inputs, two nodes
  at one depth, or a layer called twice (shared weights, counted once).
- Output shapes come from the graph (batch None). A subclassed model has no graph: Keras shows
  the shape its layers were built for (the real batch size of the first call) for layers whose
  class defines build(), "?" for the others and for anything not built yet.
- Unbuilt layers count "0 (unbuilt)"; layers with nothing to build (Dropout, pooling) count 0.
- Total / Trainable / Non-trainable lines with byte sizes; once the optimizer has state (after
  a fit), an "Optimizer params" line, included in the total.
- Default width 88 (108 with "Connected to"), narrowed to the terminal as Keras does; the
  column widths, word wrapping and "…" truncation are those of the `rich` table Keras draws.
- Keras's options: line_length, positions, show_trainable (a Y/N/- column), expand_nested
  (nested models' layers indented under them) and layer_range (two name patterns).

>>> from fastconv import layers, models
>>> m = models.Sequential([layers.BatchNormalization(input_shape=(64,))])
>>> print(summary_text(m, line_length=88).splitlines()[-2])
 Trainable params: 128 (512.00 B)
"""
import re
import shutil

import numpy as np

# fastconv's built-in layers whose Keras 3 class defines build(): Keras records their build
# shape (so a subclassed model's summary shows their output shape) and counts them
# "0 (unbuilt)" before they are built; the other built-in layers are built from the start.
_KERAS_BUILDS = frozenset((
    "Dense", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D",
    "BatchNormalization", "LayerNormalization", "Normalization", "PReLU", "Sequential",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
))


def readable_size(nbytes):
    """Bytes -> '2.60 MB' (powers of 1024, two decimals, as Keras prints)."""
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _count(arrays):
    unique = list({id(a): a for a in arrays}.values())
    n = sum(int(np.prod(a.shape)) for a in unique)
    nbytes = sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in unique)
    return n, nbytes


def _optimizer_count(model):
    """Keras counts the optimizer's variables once it is built: its slots, the int64 iteration
    counter and, unless a schedule drives it, the float32 learning rate. None before that."""
    opt = getattr(model, "optimizer", None)
    if not getattr(model, "compiled", False) or opt is None or not getattr(opt, "_state", None):
        return None
    slots = [a for _, state in opt._state.values() for a in state.values()]
    n, nbytes = _count(slots)
    n, nbytes = n + 1, nbytes + 8  # iterations
    if not callable(getattr(opt, "learning_rate", None)):
        n, nbytes = n + 1, nbytes + 4
    return n, nbytes


# -- which class defines build, as Keras sees it -----------------------------------------------
def _defines_build(layer):
    from ..layers.layer import Layer
    for cls in type(layer).__mro__:
        if cls is Layer or cls.__module__.startswith("fastconv."):
            return cls.__name__ in _KERAS_BUILDS
        if "build" in vars(cls):
            return True
    return False


def _has_sublayers(layer):
    return bool(getattr(layer, "layers", None)) or bool(getattr(layer, "_tracked", None))


# -- the graph of a functional model -----------------------------------------------------------
def _ins(node):
    from ..layers.input_layer import KerasTensor
    from ..layers.layer import flatten
    return [t for t in flatten(node.inputs) if isinstance(t, KerasTensor)]


def _outs(node):
    from ..layers.layer import flatten
    return flatten(node.outputs)


def _graph(model):
    """(operations in Keras's order, nodes by depth) of a functional model. Keras walks the
    graph depth-first from the outputs, numbering each layer when first met; a node's depth
    is its longest path to an output; layers are listed by decreasing depth, then number."""
    numbers, post_order, seen = {}, [], set()

    def visit(node):
        if id(node) in seen:
            return
        seen.add(id(node))
        numbers.setdefault(id(node.layer), len(numbers))
        for t in _ins(node):
            visit(t._history[0])
        post_order.append(node)

    for t in model._output_tensors:
        visit(t._history[0])
    node_depth, layer_depth = {}, {}
    for node in reversed(post_order):
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = node_depth[id(node)] = depth
        for t in _ins(node):
            parent = t._history[0]
            node_depth[id(parent)] = max(node_depth.get(id(parent), 0), depth + 1)
    layers = {id(n.layer): n.layer for n in post_order}
    order = sorted(layers, key=lambda k: (-layer_depth[k], numbers[k]))
    by_depth = {}
    for node in post_order:
        by_depth.setdefault(node_depth[id(node)], []).append(node)
    return [layers[k] for k in order], post_order, by_depth


def _is_chain(post_order, by_depth):
    for nodes in by_depth.values():
        if len(nodes) > 1 or (nodes and len(_ins(nodes[0])) > 1):
            return False
    layers = [id(n.layer) for n in post_order]
    return len(layers) == len(set(layers))


# -- one row per layer -------------------------------------------------------------------------
def _shape_str(shape):
    if shape is None:
        return "?"
    if isinstance(shape, (list, dict)) or (isinstance(shape, tuple) and shape and isinstance(shape[0], (tuple, list))):
        parts = [_shape_str(s) for s in (shape.values() if isinstance(shape, dict) else shape)]
        return ("[" + ", ".join(parts) + "]") if isinstance(shape, list) else ("(" + ", ".join(parts) + ")")
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ")"


def _params(layer):
    if layer.built:
        return f"{layer.count_params():,}"
    return "0 (unbuilt)" if _defines_build(layer) or _has_sublayers(layer) else "0"


def _eager_shape(layer, batch):
    """A layer of a subclassed model: the output shape for its build shape, as Keras 3 shows,
    with the batch size of the model's first call (None when build(input_shape) built it: that
    dry run's batch of 1 is not the user's)."""
    if not layer.built or layer._build_shape is None or not _defines_build(layer):
        return None
    build_shape = layer._build_shape
    if isinstance(build_shape, tuple) and build_shape:
        build_shape = (None if batch is None else int(batch),) + tuple(build_shape[1:])
    try:
        return layer.compute_output_shape(build_shape)
    except Exception:  # noqa: BLE001 - a shape Keras could not compute either prints "?"
        return None


def _output_shape(layer, batch):
    """Keras 3: the shape of the layer's latest call on graph tensors; for a layer only ever
    called on data (inside a subclassed model), its build shape's output."""
    if layer._inbound_nodes:
        shapes = [t.shape for t in _outs(layer._inbound_nodes[-1])]
        return shapes[0] if len(shapes) == 1 else shapes
    return _eager_shape(layer, batch)


def _connections(layer, graph_nodes):
    links = []
    for node in graph_nodes:
        if node.layer is layer:
            for t in _ins(node):
                parent, index = t._history
                links.append(f"{parent.layer.name}[{parent.layer._inbound_nodes.index(parent)}][{index}]")
    return ", ".join(links) or "-"


def _trainable_mark(layer):
    if not layer.weights:
        return "-"
    return "Y" if layer.trainable else "N"


def _rows(model, expand_nested=False, show_trainable=False, layer_range=None):
    """([name (type), output shape, params, connected to(, trainable)] per row, chain?)"""
    from .functional import Functional
    if isinstance(model, Functional):
        layers, graph_nodes, by_depth = _graph(model)
        chain = _is_chain(graph_nodes, by_depth)
    else:
        layers, graph_nodes, chain = model.layers, [], True
    first, last = _layer_bounds(layers, layer_range)
    rows = []

    def add(layer, level):
        prefix = "   " * level + "└ " if level else ""
        row = [f"{prefix}{layer.name} ({type(layer).__name__})", _shape_str(_output_shape(layer, model._built_batch)),
               _params(layer)]
        if not chain:
            row.append(_connections(layer, graph_nodes))
        if show_trainable:
            row.append(_trainable_mark(layer))
        rows.append(row)
        if expand_nested and getattr(layer, "layers", None):
            for inner in layer.layers:
                add(inner, level + 1)

    for layer in layers[first:last]:
        add(layer, 0)
    return rows, chain


def _layer_bounds(layers, layer_range):
    """Keras's layer_range: [first, last] layer names (regular expressions, matched at the
    start of the name); rows from the first match of the first to the last match of the last."""
    if layer_range is None:
        return 0, len(layers)
    if len(layer_range) != 2 or not all(isinstance(n, str) for n in layer_range):
        raise ValueError(f"layer_range must be two layer names (strings), got {layer_range!r}")
    lower = [i for i, layer in enumerate(layers) if re.match(layer_range[0], layer.name)]
    upper = [i for i, layer in enumerate(layers) if re.match(layer_range[1], layer.name)]
    if not lower or not upper:
        raise ValueError(f"layer_range {list(layer_range)} does not match the model's layer names "
                         f"{[layer.name for layer in layers]}")
    if min(lower) > max(upper):
        return min(upper), max(lower) + 1
    return min(lower), max(upper) + 1


# -- drawing the table as rich draws it for Keras --------------------------------------------
def _column_widths(line_length, positions):
    """Cell widths (padding included) of rich's table for Keras's column positions: each column
    asks for its share plus 2 padding, and rich takes the excess back evenly, left to right."""
    widths, current = [], 0
    for pos in positions:
        width = int(pos * line_length) - current
        if width < 4:
            raise ValueError(f"summary(line_length={line_length}) is too narrow to print the table")
        widths.append(width + 2)
        current += width
    excess = sum(widths) - (line_length - (len(widths) + 1))  # the borders take len + 1
    shares = len(widths)
    for i in range(len(widths)):
        if excess <= 0:
            break
        cut = min(widths[i], round(excess / shares))
        widths[i] -= cut
        excess -= cut
        shares -= 1
    return widths


def _wrap(text, width):
    """rich's word wrap: a word (with the spaces before and after it) moves to the next line
    when it does not fit; a word longer than the width is cut to width-1 and '…'."""
    breaks, offset = [], 0
    for match in re.finditer(r"\s*\S+\s*", text):
        word = match.group()
        if width - offset >= len(word.rstrip()):
            offset += len(word)
        else:
            if match.start():
                breaks.append(match.start())
            offset = len(word)
    lines = [text[a:b].rstrip() for a, b in zip([0] + breaks, breaks + [len(text)])]
    return [line if len(line) <= width else line[:width - 1] + "…" for line in lines]


def _align(text, width, right, centre):
    if right:
        return text.rjust(width)
    if centre:
        left = (width - len(text)) // 2
        return " " * left + text + " " * (width - len(text) - left)
    return text.ljust(width)


def _table(header, rows, widths, right, centred):
    def rule(left, mid, end, fill):
        return left + mid.join(fill * w for w in widths) + end

    def cells(values, edge):
        columns = [_wrap(v, w - 2) for v, w in zip(values, widths)]
        out = []
        for k in range(max(len(c) for c in columns)):
            parts = [" " + _align(col[k] if k < len(col) else "", w - 2, i in right, i in centred) + " "
                     for i, (col, w) in enumerate(zip(columns, widths))]
            out.append(edge + edge.join(parts) + edge)
        return out

    text = [rule("┏", "┳", "┓", "━")] + cells(header, "┃") + [rule("┡", "╇", "┩", "━")]
    for i, row in enumerate(rows):
        if i:
            text.append(rule("├", "┼", "┤", "─"))
        text.extend(cells(row, "│"))
    text.append(rule("└", "┴", "┘", "─"))
    return text


def summary_text(model, line_length=None, positions=None, expand_nested=False, show_trainable=False,
                 layer_range=None):
    """The summary as one string (what summary(print_fn=...) hands to print_fn); the options
    are Keras 3's."""
    rows, chain = _rows(model, expand_nested, show_trainable, layer_range)
    header, right = ["Layer (type)", "Output Shape", "Param #"], {2}
    if chain:
        default, default_positions = 88, [0.45, 0.80, 1.0]
    else:
        header.append("Connected to")
        default, default_positions = 108, [0.3, 0.56, 0.74, 1.0]
    positions = list(positions or default_positions)
    centred = set()
    if show_trainable:
        default += 12
        positions = [p * 0.9 for p in positions] + [1.0]
        header.append("Trainable")
        centred = {len(header) - 1}
    if len(positions) != len(header):
        raise ValueError(f"positions must give {len(header)} column ends for the columns {header}, "
                         f"got {positions}")
    # As Keras: the default width shrinks to the terminal (80 columns when there is none).
    line_length = line_length or min(default, shutil.get_terminal_size().columns - 4)
    widths = _column_widths(int(line_length), positions)
    table = _table(header, rows, widths, right, centred)
    train, train_b = _count(model.trainable_weights)
    frozen, frozen_b = _count(model.non_trainable_weights)
    optimizer = _optimizer_count(model)
    opt_n, opt_b = optimizer or (0, 0)
    lines = [f'Model: "{model.name}"'] + table + [
        f" Total params: {train + frozen + opt_n:,} ({readable_size(train_b + frozen_b + opt_b)})",
        f" Trainable params: {train:,} ({readable_size(train_b)})",
        f" Non-trainable params: {frozen:,} ({readable_size(frozen_b)})",
    ]
    if optimizer is not None:
        lines.append(f" Optimizer params: {opt_n:,} ({readable_size(opt_b)})")
    return "\n".join(lines) + "\n"
