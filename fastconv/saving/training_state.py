"""Training state as data: a model's weights, its optimizer's slots and step counter, and a
JSON document, in one zip archive that `np.load`-style readers open without pickle.

Used by ``fastconv train --resume`` (fastconv/_cli_resume.py) and by the BackupAndRestore
callback. One archive (not an .npz beside a .json) because it is written in one atomic step,
so the arrays and the JSON always belong to the same moment. Members:

- ``state.json`` (or another name: model files use ``config.json``): the caller's document;
- ``weights/<path>.npy``: every weight of the model (non-trainable ones included), keyed by
  the same paths as weight files;
- ``optimizer/<path>/<slot>.npy`` and ``optimizer/iterations.npy``
  (``Optimizer.state_arrays``).
"""
import json
import zipfile

import numpy as np

from .atomic import atomic_write
from .weights import convert_arrays, weight_arrays, weight_paths


def save_training_state(path, model, doc, document="state.json", include_optimizer=True):
    """Write `doc` (JSON data, as member `document`) and the model's and its optimizer's arrays
    to `path`, atomically."""
    arrays = {"weights/" + k: a for k, a in weight_arrays(model).items()}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and include_optimizer:
        named = weight_paths(model)
        arrays.update(("optimizer/" + k, a) for k, a in optimizer.state_arrays(named).items())
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(document, json.dumps(doc, indent=1))
        for key, a in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(a, order="C"), allow_pickle=False)


def read_training_state(path, document="state.json"):
    """(document, {key: array}) from `path`. Errors (OSError, KeyError, ValueError,
    zipfile.BadZipFile, ...) propagate: callers word them for their own users."""
    with zipfile.ZipFile(path) as zf:
        doc = json.loads(zf.read(document))
        arrays = {}
        for name in zf.namelist():
            if name.endswith(".npy"):
                with zf.open(name) as member:
                    arrays[name[:-4]] = np.lib.format.read_array(member, allow_pickle=False)
    return doc, arrays


def load_training_state(model, arrays, path):
    """Put saved weights and optimizer state into a built `model`, checking every array
    before anything is assigned (ValueError naming `path` otherwise)."""
    names = weight_paths(model)
    weights = {k[len("weights/"):]: a for k, a in arrays.items() if k.startswith("weights/")}
    if set(weights) != set(names):
        raise ValueError(f"cannot resume from {path}: its weights do not match the model "
                         f"(missing {sorted(set(names) - set(weights))}, "
                         f"unexpected {sorted(set(weights) - set(names))})")
    shapes = [k for k in names if tuple(weights[k].shape) != tuple(names[k].shape)]
    if shapes:
        raise ValueError(f"cannot resume from {path}: wrongly shaped weights {shapes}")
    weights = convert_arrays(names, weights, path)
    optimizer = getattr(model, "optimizer", None)
    slots = {k[len("optimizer/"):]: a for k, a in arrays.items() if k.startswith("optimizer/")}
    if optimizer is not None:
        try:
            optimizer.load_state_arrays(names, slots)  # checks everything before changing anything
        except ValueError as e:
            raise ValueError(f"cannot resume from {path}: {e}") from None
    for k, a in weights.items():
        names[k].assign(a)
