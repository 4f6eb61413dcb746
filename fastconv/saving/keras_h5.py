"""Keras HDF5 weight files: read the legacy layout and Keras 3's `.weights.h5`, write the latter.

Two layouts exist in the wild:
- legacy (Keras 2 and the applications downloads, `*_weights_tf_dim_ordering_tf_kernels.h5`):
  root attribute `layer_names`; one group per layer whose attribute `weight_names` lists its
  datasets in the layer's weight order (a whole-model .h5 keeps the same under `model_weights`).
- Keras 3 (`model.save_weights("x.weights.h5")`): `layers/<class in snake case>[_n]/vars/0..k`,
  numbered per class in `model.layers` order, the layer's name in the `vars` group's `name`
  attribute; nested models repeat the pattern under their own group.

fastconv composite blocks (a ResNet block holds its convolutions) are read as their weighted
leaf layers, so a Keras-named fastconv model loads a flat Keras file by name. Loading is
all-or-nothing: every mismatch is listed in one error and nothing is assigned unless all
match. HDF5 files are read as arrays only (h5py never unpickles; no code runs).
"""
import os
from collections import Counter, namedtuple

import numpy as np

from ..layers.input_layer import InputLayer
from ..layers.layer import to_snake_case
from .atomic import atomic_write
from .weights import LoadStatus, _require_built, convert_arrays

# One weighted layer as the file stores it: its name (None where the file has none), its
# Keras 3 group key (class in snake case plus a per-class number; None for legacy files) and
# its arrays in the layer's weight order.
FileLayer = namedtuple("FileLayer", "name key arrays")


def _h5py():
    try:
        import h5py
    except ImportError:  # optional extra: `pip install fastconv[h5]`
        raise ImportError("reading or writing Keras HDF5 weight files needs h5py: "
                          "pip install 'fastconv[h5]' (or pip install h5py)") from None
    return h5py


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _array(dataset, where):
    if dataset.dtype.kind not in "fiub":  # strings, compounds, object references: not weights
        raise ValueError(f"{where}: dataset of dtype {dataset.dtype} is not a numeric weight array")
    return np.asarray(dataset[()])


# -- the model side ------------------------------------------------------------------------
def weighted_leaves(model):
    """The layers that own weights, in Keras's `model.layers` order: a composite block
    contributes its sublayers (in the order its `_keras_layer_order()` gives, where the block
    defines one, so that per-class numbering matches the flat Keras model). Shared layers once."""
    out, seen = [], set()

    def children(layer):
        # A functional model tracks its layers in Keras's order already (engine/functional.py).
        order = getattr(layer, "_keras_layer_order", None)
        return order() if order else layer._sublayers()

    def walk(layer):
        if id(layer) in seen or isinstance(layer, InputLayer):
            return
        seen.add(id(layer))
        if layer._own_weights:
            out.append(layer)
        for child in children(layer):
            walk(child)

    for top in children(model):
        walk(top)
    return out


def _class_keys(leaves):
    """Keras 3's group key per layer: class name in snake case, numbered per class."""
    used, keys = Counter(), []
    for layer in leaves:
        base = to_snake_case(type(layer).__name__)
        keys.append(base if not used[base] else f"{base}_{used[base]}")
        used[base] += 1
    return keys


# -- reading -------------------------------------------------------------------------------
def _read_legacy(root, path):
    names = [_text(n) for n in root.attrs["layer_names"]]
    out = []
    for name in names:
        if name not in root:
            raise ValueError(f"{path}: layer {name!r} is listed in layer_names but has no group")
        group = root[name]
        weight_names = [_text(w) for w in group.attrs.get("weight_names", [])]
        if weight_names:
            out.append(FileLayer(name, None, [_array(group[w], f"{path}:{name}/{w}") for w in weight_names]))
    return out


def _read_keras3(group, path, prefix=""):
    out = []
    for key in group:  # h5py lists names sorted; the order does not matter (matched by name or key)
        sub = group[key]
        arrays = []
        if "vars" in sub:
            ds = sub["vars"]
            arrays = [_array(ds[str(i)], f"{path}:{prefix}{key}/vars/{i}") for i in range(len(ds))]
            if arrays:
                name = ds.attrs.get("name")
                out.append(FileLayer(None if name is None else _text(name), prefix + key, arrays))
        if "layers" in sub:  # a nested model or a layer with sublayers
            out.extend(_read_keras3(sub["layers"], path, f"{prefix}{key}/"))
    return out


def read_keras_h5(filepath):
    """[FileLayer] of every weighted layer in a Keras HDF5 weights file (either layout)."""
    h5py = _h5py()
    filepath = os.fspath(filepath)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"weights file {filepath!r} not found")
    try:
        with h5py.File(filepath, "r") as f:
            root = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
            if "layer_names" in root.attrs:
                return _read_legacy(root, filepath)
            if "layers" in f:
                return _read_keras3(f["layers"], filepath)
    except OSError as e:
        raise ValueError(f"cannot read {filepath} as HDF5: {e}") from None
    raise ValueError(f"{filepath} is HDF5 but in neither Keras layout (no root attribute 'layer_names', "
                     "no 'layers' group)")


# -- matching and assigning ----------------------------------------------------------------
def _pairs(model, stored, by_name, filepath):
    """[(fastconv layer, FileLayer)], [unmatched file layers], [unmatched model layers]."""
    leaves = weighted_leaves(model)
    by_my_name = {l.name: l for l in leaves}
    named = all(s.name is not None for s in stored)
    unique = len(by_my_name) == len(leaves)
    if by_name and not unique:
        twice = sorted({l.name for l in leaves if sum(m.name == l.name for m in leaves) > 1})
        raise ValueError(f"by_name=True needs unique layer names, but model {model.name!r} has several "
                         f"layers named {twice}")
    if by_name or (named and unique and len(stored) == len(leaves) and all(s.name in by_my_name for s in stored)):
        if not named:
            raise ValueError(f"{filepath}: by_name=True, but the file does not store layer names")
        pairs = [(by_my_name[s.name], s) for s in stored if s.name in by_my_name]
        matched = {id(l) for l, _ in pairs}
        return pairs, [s for s in stored if s.name not in by_my_name], [l for l in leaves if id(l) not in matched]
    if stored and stored[0].key is not None:  # Keras 3 without matching names: by class and number
        mine = dict(zip(_class_keys(leaves), leaves))
        pairs = [(mine[s.key], s) for s in stored if s.key in mine]
        matched = {id(l) for l, _ in pairs}
        return pairs, [s for s in stored if s.key not in mine], [l for l in leaves if id(l) not in matched]
    n = min(len(stored), len(leaves))  # legacy by_name=False: Keras matches weighted layers in order
    return list(zip(leaves[:n], stored[:n])), stored[n:], leaves[n:]


def load_keras_h5(model, filepath, by_name=False, skip_mismatch=False):
    """Assign a Keras HDF5 file's weights to `model`; returns LoadStatus. Strict unless
    skip_mismatch: any unmatched or wrongly shaped layer is an error listing all of them.
    by_name=True loads the layers whose names match and leaves the others (as Keras)."""
    _require_built(model)
    stored = read_keras_h5(filepath)
    pairs, extra, missing = _pairs(model, stored, by_name, filepath)
    if by_name:
        extra, missing = [], []  # Keras's by_name semantics: unmatched layers are left alone
    mismatched = []
    for layer, s in pairs:
        shapes = [tuple(a.shape) for a in s.arrays]
        mine = [tuple(v.shape) for v in layer._own_weights]
        if shapes != mine:
            mismatched.append((layer.name, s.name or s.key, shapes, mine))
    if not skip_mismatch and (extra or missing or mismatched):
        parts = [f"cannot load {filepath} into model {model.name!r}; nothing was assigned:"]
        if missing:
            parts.append("  model layers with weights that the file lacks: "
                         + ", ".join(f"{l.name} {[tuple(v.shape) for v in l._own_weights]}" for l in missing))
        if extra:
            parts.append("  file layers that the model lacks: "
                         + ", ".join(f"{s.name or s.key} {[tuple(a.shape) for a in s.arrays]}" for s in extra))
        for mine_name, file_name, fs, ms in mismatched:
            parts.append(f"  layer {mine_name} (file {file_name}): file shapes {fs}, model shapes {ms}")
        parts.append("  (by_name=True loads only the layers whose names match; skip_mismatch=True loads what fits)")
        raise ValueError("\n".join(parts))
    bad = {name for name, *_ in mismatched}
    variables, arrays = {}, {}
    for layer, s in pairs:
        if layer.name in bad:
            continue
        for i, (var, a) in enumerate(zip(layer._own_weights, s.arrays)):
            variables[(layer.name, i)] = var
            arrays[(layer.name, i)] = a
    converted = convert_arrays(variables, arrays, filepath)  # checks all before any assignment
    for k, a in converted.items():
        variables[k].assign(a)
    return LoadStatus([l.name for l in missing], [s.name or s.key for s in extra],
                      [(m, tuple(fs), tuple(ms)) for m, _, fs, ms in mismatched])


# -- writing -------------------------------------------------------------------------------
def save_keras_h5(model, filepath, overwrite=True):
    """Write Keras 3's `.weights.h5` layout: Keras's `model.load_weights` reads it into the
    same architecture built in Keras (weighted layers numbered per class in Keras order)."""
    h5py = _h5py()
    _require_built(model)
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    leaves = weighted_leaves(model)
    with atomic_write(filepath) as fobj:
        with h5py.File(fobj, "w") as f:
            layers_group = f.create_group("layers")
            for key, layer in zip(_class_keys(leaves), leaves):
                var_group = layers_group.create_group(key).create_group("vars")
                var_group.attrs["name"] = layer.name
                for i, v in enumerate(layer._own_weights):
                    var_group.create_dataset(str(i), data=np.asarray(v.numpy()))
            f.create_group("vars")  # the model's own variables: none
