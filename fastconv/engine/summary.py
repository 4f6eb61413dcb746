"""Model.summary(): a Keras 3 style table (Layer (type), Output Shape, Param #, plus
Connected to for non-sequential graphs) and the Total / Trainable / Non-trainable lines with
byte sizes, counting shared weights once.

>>> from fastconv import layers, models
>>> m = models.Sequential([layers.BatchNormalization(input_shape=(64,))])
>>> print(summary_text(m).splitlines()[-2])
 Trainable params: 128 (512.00 B)
"""
import numpy as np


def readable_size(nbytes):
    """Bytes -> '2.60 MB' (powers of 1024, two decimals, as Keras prints)."""
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _count(weights):
    n = sum(int(np.prod(w.shape)) for w in weights)
    nbytes = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in weights)
    return n, nbytes


def _shape_str(shape):
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return ", ".join(_shape_str(s) for s in shape)
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _rows(model):
    """(name (type), output shape, params, connected-to) per top-level layer."""
    from .functional import Functional
    nodes = getattr(model, "_nodes", []) if isinstance(model, Functional) else []
    connected = not _is_chain(nodes)
    rows = []
    for layer in model.layers:
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        mine = [n for n in nodes if n.layer is layer]
        if mine:
            shape = [t.shape for t in _outs(mine[0])]
            shape = shape[0] if len(shape) == 1 else shape
        else:
            shape = layer._output_shape
        links = []
        for n in mine:
            for t in _ins(n):
                src, idx = t._history
                links.append(f"{src.layer.name}[{_node_index(nodes, src)}][{idx}]")
        rows.append([f"{layer.name} ({type(layer).__name__})", _shape_str(shape), params, ", ".join(links) or "-"])
    return rows, connected


def _outs(node):
    from ..layers.layer import flatten
    return flatten(node.outputs)


def _ins(node):
    from ..layers.input_layer import KerasTensor
    from ..layers.layer import flatten
    return [t for t in flatten(node.inputs) if isinstance(t, KerasTensor)]


def _node_index(nodes, node):
    return [n for n in nodes if n.layer is node.layer].index(node)


def _is_chain(nodes):
    """True when every node has at most one input, from the node just before it."""
    for prev, node in zip(nodes, nodes[1:]):
        ins = _ins(node)
        if len(ins) != 1 or ins[0]._history[0] is not prev:
            return False
    return all(len(_outs(n)) == 1 for n in nodes)


def _table(header, rows, widths):
    def line(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def cells(vals, edge, sep):
        out = []
        for i, (v, w) in enumerate(zip(vals, widths)):
            numeric = header[i] == "Param #"
            out.append(" " + (v.rjust(w) if numeric else v.ljust(w)) + " ")
        return edge + sep.join(out) + edge

    text = [line("┏", "┳", "┓", "━"), cells(header, "┃", "┃"), line("┡", "╇", "┩", "━")]
    for i, r in enumerate(rows):
        if i:
            text.append(line("├", "┼", "┤", "─"))
        text.append(cells(r, "│", "│"))
    text.append(line("└", "┴", "┘", "─"))
    return text


def summary_text(model, line_length=None):
    if not model.built:
        raise ValueError(f"model {model.name!r} has not been built yet, so its layers have no weights or "
                         f"shapes to report. Build it first: call model.build(input_shape) or call it on "
                         f"a batch of data, or give the first layer an input_shape / use layers.Input.")
    rows, connected = _rows(model)
    header = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if connected else [])
    rows = [r[:len(header)] for r in rows]
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(len(header))]
    widths[0], widths[1], widths[2] = max(widths[0], 31), max(widths[1], 22), max(widths[2], 13)
    if line_length:
        extra = line_length - (sum(widths) + 3 * len(widths) + 1)
        if extra > 0:
            widths[0] += extra
    total, total_b = _count(model.weights)
    train, train_b = _count(model.trainable_weights)
    frozen, frozen_b = _count(model.non_trainable_weights)
    lines = [f'Model: "{model.name}"'] + _table(header, rows, widths) + [
        f" Total params: {total:,} ({readable_size(total_b)})",
        f" Trainable params: {train:,} ({readable_size(train_b)})",
        f" Non-trainable params: {frozen:,} ({readable_size(frozen_b)})",
    ]
    return "\n".join(lines)

