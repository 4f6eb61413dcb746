"""save_weights / load_weights: one .npz holding every weight (non-trainable state such as
BatchNormalization moving statistics included), keyed by hierarchical path.

Paths do not use the process-wide auto names (conv2d_7 in one run may be conv2d in the next):
like Keras 3 weight files, each child is named by its class in snake case, numbered per parent
(`model/conv2d/kernel`, `model/conv2d_1/bias`, `model/sequential/dense/kernel`), so a file
loads into any model of the same architecture. Loading is strict by default: the error lists
every missing, unexpected and wrongly shaped key.
"""
import os
from collections import Counter, namedtuple

import numpy as np

from ..layers.input_layer import InputLayer
from ..layers.layer import to_snake_case

LoadStatus = namedtuple("LoadStatus", "missing unexpected mismatched")


def weight_paths(model, root="model"):
    """{path: Variable} in weights order; shared layers and weights appear once."""
    out, seen_layers, seen_vars = {}, set(), set()

    def walk(layer, prefix):
        if id(layer) in seen_layers:
            return
        seen_layers.add(id(layer))
        used = Counter()
        for var, key in zip(layer._own_weights, layer._weight_keys):
            if id(var) in seen_vars:
                continue
            seen_vars.add(id(var))
            n = used["w:" + key]
            used["w:" + key] += 1
            out[f"{prefix}/{key}" + (f"_{n}" if n else "")] = var
        for child in layer._sublayers():
            if isinstance(child, InputLayer):
                continue
            base = to_snake_case(type(child).__name__)
            n = used[base]
            used[base] += 1
            walk(child, f"{prefix}/{base}" + (f"_{n}" if n else ""))

    walk(model, root)
    return out


def _require_built(model):
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built, so it has no weights yet; build it first "
                         f"(model.build(input_shape) or call it on data)")


def save_weights(model, filepath, overwrite=True):
    _require_built(model)
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    arrays = {k: np.asarray(v.numpy()) for k, v in weight_paths(model).items()}
    # A file object keeps the name exactly as given (np.savez would append .npz to a path).
    with open(filepath, "wb") as f:
        np.savez(f, **arrays)


def load_weights(model, filepath, strict=True):
    """Assign the file's arrays to the model's weights; returns LoadStatus of what did not match."""
    _require_built(model)
    with np.load(os.fspath(filepath), allow_pickle=False) as f:
        stored = {k: f[k] for k in f.files}
    mine = weight_paths(model)
    missing = [k for k in mine if k not in stored]
    unexpected = [k for k in stored if k not in mine]
    mismatched = [(k, tuple(stored[k].shape), tuple(v.shape)) for k, v in mine.items()
                  if k in stored and tuple(stored[k].shape) != tuple(v.shape)]
    if strict and (missing or unexpected or mismatched):
        parts = [f"cannot load {filepath} into model {model.name!r} (strict):"]
        if missing:
            parts.append(f"  missing keys (in the model, not in the file): {missing}")
        if unexpected:
            parts.append(f"  unexpected keys (in the file, not in the model): {unexpected}")
        if mismatched:
            parts.append("  wrongly shaped keys: " + ", ".join(
                f"{k} (file {fs}, model {ms})" for k, fs, ms in mismatched))
        raise ValueError("\n".join(parts))
    bad = {k for k, _, _ in mismatched}
    for k, var in mine.items():
        if k in stored and k not in bad:
            var.assign(stored[k].astype(var.dtype, copy=False))
    return LoadStatus(missing, unexpected, mismatched)
