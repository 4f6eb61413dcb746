"""plot_model: a picture of a model's layer graph, drawn with matplotlib (no graphviz).

One box per layer (name and class; with show_shapes its input and output shapes), an arrow
along every edge of the graph, layers placed in rows by topological depth (the longest path
from an input), top to bottom (rankdir="TB") or left to right ("LR"). A model used as a layer
inside another is one box, as Keras draws it with expand_nested=False.
"""
import os

from ..saving import atomic_write


def _shape_text(shapes):
    shapes = [tuple(s) for s in shapes]
    if not shapes:
        return "?"
    return ", ".join(str(s) for s in shapes) if len(shapes) > 1 else str(shapes[0])


def _shapes_of(tensors):
    from ..layers.layer import flatten
    return [t.shape for t in flatten(tensors) if hasattr(t, "shape")]


def model_to_graph(model):
    """(layers, edges): `layers` is a list of dicts {layer, name, kind, inputs, outputs}
    (shapes as text) in topological order; `edges` is a list of (parent index, child index)."""
    from ..engine.functional import Functional
    layers, index, edges = [], {}, []

    def add(layer, inputs, outputs):
        if id(layer) not in index:
            index[id(layer)] = len(layers)
            layers.append(dict(layer=layer, name=layer.name, kind=type(layer).__name__,
                               inputs=inputs, outputs=outputs))
        return index[id(layer)]

    if isinstance(model, Functional):
        for node in model._nodes:
            child = add(node.layer, _shape_text(_shapes_of(node.inputs)) if node.parents else
                        _shape_text(_shapes_of(node.outputs)), _shape_text(_shapes_of(node.outputs)))
            for parent in node.parents:
                edge = (index[id(parent.layer)], child)
                if edge not in edges:  # a layer fed the same tensor twice: one arrow
                    edges.append(edge)
        return layers, edges
    from ..engine.sequential import Sequential
    if not isinstance(model, Sequential):
        # A subclassed model's call() is Python code, not a recorded graph: one box, as Keras.
        add(model, _safe_shape(model, "input_shape"), _safe_shape(model, "output_shape"))
        return layers, edges
    # Sequential: each layer feeds the next.
    for layer in model.layers:
        inputs = _safe_shape(layer, "input_shape")
        i = add(layer, inputs, _safe_shape(layer, "output_shape"))
        if i > 0:
            edges.append((i - 1, i))
    return layers, edges


def _safe_shape(layer, attr):
    try:
        shape = getattr(layer, attr)
    except (AttributeError, ValueError):
        return "?"
    if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)):
        return _shape_text(shape)
    return str(tuple(shape)) if shape is not None else "?"


def _depths(n, edges):
    """Longest-path depth of each layer; `edges` go from earlier to later indices."""
    depth = [0] * n
    for parent, child in sorted(edges, key=lambda e: e[1]):
        depth[child] = max(depth[child], depth[parent] + 1)
    return depth


def _labels(layers, show_shapes, show_dtype, show_layer_names, show_layer_activations, show_trainable):
    out = []
    for item in layers:
        layer = item["layer"]
        head = f"{item['name']} ({item['kind']})" if show_layer_names else item["kind"]
        lines = [head]
        activation = getattr(layer, "activation", None)
        if show_layer_activations and activation is not None:
            lines.append("activation: " + getattr(activation, "__name__", str(activation)))
        if show_dtype:
            lines.append(f"dtype: {getattr(layer, 'dtype', None)}")
        if show_trainable:
            lines.append(f"trainable: {bool(getattr(layer, 'trainable', True))}")
        if show_shapes:
            lines += ["input: " + item["inputs"], "output: " + item["outputs"]]
        out.append(lines)
    return out


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=True,
               rankdir="TB", expand_nested=False, dpi=96, show_layer_activations=False,
               show_trainable=False, layer_range=None):
    """Draw `model`'s layer graph to `to_file` (format from the extension: png, pdf, svg, ...;
    PNG when there is none) and return the path. Needs matplotlib (``pip install
    "fastconv[viz]"``); no system graphviz. expand_nested=True is not supported (nested
    models are drawn as one box)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import FancyBboxPatch
    except ImportError:
        raise ImportError('plot_model needs matplotlib: pip install "fastconv[viz]"') from None
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"rankdir must be 'TB' or 'LR', got {rankdir!r}")
    if layer_range is not None:
        raise NotImplementedError("plot_model(layer_range=...) is not supported; the whole model is drawn")
    if expand_nested:
        raise NotImplementedError("plot_model(expand_nested=True) is not supported; nested models "
                                  "are drawn as one box")
    layers, edges = model_to_graph(model)
    if not layers:
        raise ValueError(f"model {model.name!r} has no layers to plot")
    labels = _labels(layers, show_shapes, show_dtype, show_layer_names, show_layer_activations, show_trainable)
    depth = _depths(len(layers), edges)
    rows = {}
    for i, d in enumerate(depth):
        rows.setdefault(d, []).append(i)

    # Sizes in inches (the axes span the figure 1:1, so data units are inches). Positions are
    # worked out as (across, along) -- along runs with the depth -- and mapped to (x, y) by
    # rankdir when drawn.
    line_h, char_w, pad = 0.19, 0.075, 0.12
    box_w = max(len(line) for lines in labels for line in lines) * char_w + 2 * pad
    box_h = max(len(lines) for lines in labels) * line_h + 2 * pad
    size_across, size_along = (box_w, box_h) if rankdir == "TB" else (box_h, box_w)
    gap_across, gap_along, lane = 0.4, 0.5, 0.18
    skips = [(p, c) for p, c in edges if depth[c] - depth[p] > 1]
    margin = gap_across + lane * (len(skips) + 1)  # room beside the boxes for shortcut lanes
    width = max(len(r) for r in rows.values())
    extent_across = width * (size_across + gap_across) - gap_across + 2 * margin
    extent_along = len(rows) * (size_along + gap_along) + gap_along
    place = {}
    for d, members in rows.items():
        for k, i in enumerate(members):
            place[i] = (extent_across / 2 + (k - (len(members) - 1) / 2) * (size_across + gap_across),
                        gap_along + size_along / 2 + d * (size_along + gap_along))
    if rankdir == "TB":
        fig_w, fig_h = extent_across, extent_along
        to_xy = lambda a, b: (a, extent_along - b)  # noqa: E731
    else:
        fig_w, fig_h = extent_along, extent_across
        to_xy = lambda a, b: (b, extent_across - a)  # noqa: E731

    fig = Figure(figsize=(fig_w, fig_h))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, fig_w)
    ax.set_ylim(0, fig_h)
    ax.axis("off")
    for i, lines in enumerate(labels):
        x, y = to_xy(*place[i])
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0,rounding_size=0.06", linewidth=1.0,
                                    edgecolor="#333333", facecolor="#dde8f5"))
        ax.text(x, y, "\n".join(lines), ha="center", va="center", fontsize=8, family="monospace",
                linespacing=1.3)
    arrow = dict(arrowstyle="-|>", color="#333333", linewidth=1.0, shrinkA=0, shrinkB=0)
    for parent, child in edges:
        (a0, b0), (a1, b1) = place[parent], place[child]
        if (parent, child) not in skips:
            ax.annotate("", xy=to_xy(a1, b1 - size_along / 2), xytext=to_xy(a0, b0 + size_along / 2),
                        arrowprops=arrow)
            continue
        # A shortcut over rows (a residual connection) leaves the parent's side, runs down a
        # lane beside every box in between, and enters the child's side, so it never crosses
        # the boxes of the main path.
        side = 1 if (a0 + a1) / 2 >= extent_across / 2 else -1
        between = [place[i][0] for i in range(len(layers)) if depth[parent] < depth[i] < depth[child]]
        edge = max([side * a for a in between + [a0, a1]]) * side + side * size_across / 2
        lane_at = edge + side * lane * (skips.index((parent, child)) + 1)
        start, end = (a0 + side * size_across / 2, b0), (a1 + side * size_across / 2, b1)
        path = [to_xy(*start), to_xy(lane_at, b0), to_xy(lane_at, b1)]
        ax.plot([p[0] for p in path], [p[1] for p in path], color="#333333", linewidth=1.0)
        ax.annotate("", xy=to_xy(*end), xytext=path[-1], arrowprops=arrow)
    fmt = os.path.splitext(os.fspath(to_file))[1][1:].lower() or "png"
    with atomic_write(to_file) as f:
        fig.savefig(f, format=fmt, dpi=dpi)
    return to_file
