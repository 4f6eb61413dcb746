"""save_weights / load_weights: one .npz holding every weight (non-trainable state such as
BatchNormalization moving statistics included), keyed by hierarchical path.

Paths do not use the process-wide auto names (conv2d_7 in one run may be conv2d in the next):
like Keras 3 weight files, each child is named by its class in snake case, numbered per parent
(`model/conv2d/kernel`, `model/conv2d_1/bias`, `model/sequential/dense/kernel`), so a file
loads into any model of the same architecture. Loading is strict by default: the error lists
every missing, unexpected and wrongly shaped key. Loading checks and converts every array
before assigning any, so a bad file leaves the model as it was. Saving is atomic
(`atomic_write`): an interrupted save leaves the previous file intact.
"""
import os
import zipfile
import zlib
from collections import Counter, namedtuple

import numpy as np

from .atomic import atomic_write

LoadStatus = namedtuple("LoadStatus", "missing unexpected mismatched")


def weight_paths(model, root="model"):
    """{path: Variable} in weights order; shared layers and weights appear once."""
    # Imported here: layers import fastconv.saving (serialization), so saving cannot import
    # layers while it loads.
    from ..layers.input_layer import InputLayer
    from ..layers.layer import to_snake_case
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


def weight_arrays(model):
    """{path: host array} of every weight (what save_weights writes)."""
    _require_built(model)
    return {k: np.asarray(v.numpy()) for k, v in weight_paths(model).items()}


def is_hdf5_path(filepath):
    """Keras's HDF5 weight files: `.h5`, `.hdf5` (`.weights.h5` included)."""
    return os.fspath(filepath).lower().endswith((".h5", ".hdf5"))


def save_weights(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if is_hdf5_path(filepath):
        from .keras_h5 import save_keras_h5  # h5py is optional: imported only for HDF5 files
        return save_keras_h5(model, filepath, overwrite=overwrite)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    arrays = weight_arrays(model)
    # A file object keeps the name exactly as given (np.savez would append .npz to a path).
    with atomic_write(filepath) as f:
        np.savez(f, **arrays)


def read_npz(filepath, what="weights file"):
    """Every array of an .npz as a dict, read with allow_pickle=False; a file that is not a
    readable .npz (truncated, corrupt, pickled objects) is a ValueError naming it."""
    filepath = os.fspath(filepath)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"{what} {filepath!r} not found")
    try:
        f = np.load(filepath, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):  # np.load also reads a lone .npy array
            raise ValueError("a single .npy array, not an .npz archive")
        with f:  # arrays are read (and checked) here, lazily, one by one
            return {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"cannot read {what} {filepath}: {e}") from None


def convert_arrays(named_variables, stored, source):
    """{path: array converted to its variable's dtype} for every path of `stored`, after checking
    that each converts (same kind of number: no strings, complex or objects). Raises ValueError
    listing every array that does not, so that callers can assign all or nothing."""
    out, bad = {}, []
    for k, a in stored.items():
        var = named_variables[k]
        a = np.asarray(a)
        if not np.can_cast(a.dtype, var.dtype, casting="same_kind"):
            bad.append(f"{k} ({a.dtype})")
            continue
        out[k] = a.astype(var.dtype, copy=False)
    if bad:
        raise ValueError(f"cannot load {source}: arrays that do not convert to the weights' dtype: "
                         + ", ".join(bad))
    return out


def load_weights(model, filepath, strict=True, by_name=False):
    """Assign the file's arrays to the model's weights; returns LoadStatus of what did not match.
    Nothing is assigned unless every array to be loaded is valid. HDF5 files (.h5, .hdf5) are
    read as Keras weight files (saving/keras_h5.py); by_name applies to those only."""
    _require_built(model)
    if is_hdf5_path(filepath):
        from .keras_h5 import load_keras_h5
        return load_keras_h5(model, filepath, by_name=by_name, skip_mismatch=not strict)
    if by_name:
        raise ValueError(f"by_name=True applies to Keras HDF5 files (.h5); {os.fspath(filepath)} is an "
                         ".npz, which is always matched by path")
    stored = read_npz(filepath)
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
    arrays = convert_arrays(mine, {k: a for k, a in stored.items() if k in mine and k not in bad}, filepath)
    for k, a in arrays.items():
        mine[k].assign(a)
    return LoadStatus(missing, unexpected, mismatched)
