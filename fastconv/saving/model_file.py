"""Whole models in one file: `save_model(model, "m.keras")` and `load_model("m.keras")`.

The file is the training-state archive of training_state.py (a zip written in one atomic
step) with ``config.json`` as its document:

- ``config.json``: ``{"format", "format_version", "model": serialize(model), "build_config",
  "compile_config": {"optimizer", "loss", "metrics"} or null}``;
- ``weights/<path>.npy``: every weight, keyed as in weight files;
- ``optimizer/<path>/<slot>.npy`` and ``optimizer/iterations.npy``: the optimizer's slots
  and step counter, so that training continues exactly where it stopped.

Loading reads arrays with ``allow_pickle=False`` and classes only by name from fastconv's
tables and the registered/custom objects (saving/serialization.py): a model file is data and
never runs code. Keras's ``.h5`` whole-model files are refused with a message saying what to
use instead (fastconv reads HDF5 weight files only).
"""
import json
import os
import zipfile
import zlib

from .serialization import deserialize, deserialize_value, serialize, serialize_value
from .training_state import load_training_state, read_training_state, save_training_state

FORMAT = "fastconv.keras"
FORMAT_VERSION = 1
_HDF5 = (".h5", ".hdf5")


def check_model_path(filepath, action="save"):
    """A whole-model path must end in .keras (ValueError naming the path otherwise)."""
    filepath = os.fspath(filepath)
    if filepath.lower().endswith(_HDF5):
        raise ValueError(f"cannot {action} {filepath!r}: fastconv does not read or write whole models in "
                         f"HDF5 (.h5); use a '.keras' file for the whole model, or model.save_weights / "
                         f"load_weights for weights only")
    if not filepath.endswith(".keras"):
        raise ValueError(f"cannot {action} {filepath!r}: a whole-model file must end in '.keras' "
                         f"(weights alone: model.save_weights)")
    return filepath


def compile_config(model):
    """What model.compile was given, as data (None when the model is not compiled)."""
    if not getattr(model, "compiled", False):
        return None
    args = getattr(model, "_compile_arguments", {})
    return {"optimizer": serialize(model.optimizer),
            "loss": serialize_value(args.get("loss"), "model.compile(loss=...)"),
            "metrics": serialize_value(args.get("metrics"), "model.compile(metrics=...)")}


def save_model(model, filepath, overwrite=True, include_optimizer=True):
    """Write `model` (architecture, weights, compile state and optimizer slots) to a .keras zip."""
    filepath = check_model_path(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built, so it has no weights to save; build it first "
                         f"(model.build(input_shape) or call it on data)")
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": serialize(model),
           "build_config": {"input_shape": serialize_value(model._build_shape)},
           "compile_config": compile_config(model) if include_optimizer else None}
    save_training_state(filepath, model, doc, document="config.json", include_optimizer=include_optimizer)


def model_from_json(json_string, custom_objects=None):
    """The (unbuilt-weights, freshly initialised) model a Model.to_json() string describes."""
    try:
        config = json.loads(json_string)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model_from_json: not a JSON string ({e})") from None
    return deserialize(config, custom_objects)


def _shape(value):
    if isinstance(value, list) and value and isinstance(value[0], list):
        return [tuple(v) for v in value]
    return None if value is None else tuple(value)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """The model saved in a .keras file, built, with its weights, and (compile=True) compiled
    with its optimizer's slots and step counter restored. `custom_objects` maps class or
    function names to the objects (see register_keras_serializable for the other way).
    `safe_mode` is accepted for Keras compatibility: fastconv files never hold code, so
    loading is always safe."""
    filepath = check_model_path(filepath, "load")
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"model file {filepath!r} not found")
    try:
        doc, arrays = read_training_state(filepath, document="config.json")
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"cannot load model file {filepath}: not a readable fastconv .keras file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"cannot load model file {filepath}: config.json is not a {FORMAT} document "
                         f"(format {doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"cannot load model file {filepath}: format version {doc.get('format_version')!r}, "
                         f"this fastconv reads version {FORMAT_VERSION}")
    try:
        model, settings = _rebuild(doc, custom_objects, compile)
    except (TypeError, KeyError, AttributeError, IndexError) as e:
        # A config of the right format but wrong content (a list where a dict belongs, ...).
        raise ValueError(f"cannot load model file {filepath}: malformed config.json "
                         f"({type(e).__name__}: {e})") from None
    except ValueError as e:
        raise ValueError(f"cannot load model file {filepath}: {e}") from None
    if not settings:
        arrays = {k: a for k, a in arrays.items() if not k.startswith("optimizer/")}
    load_training_state(model, arrays, filepath)
    return model


def _rebuild(doc, custom_objects, compile):
    """(built model, compile settings used or None) from a config.json document."""
    from ..engine.model import Model
    model = deserialize(doc.get("model"), custom_objects)
    if not isinstance(model, Model):
        raise ValueError(f"it describes a {type(model).__name__}, not a model")
    if not model.built:
        shape = _shape((doc.get("build_config") or {}).get("input_shape"))
        if shape is None:
            raise ValueError("the model was saved unbuilt")
        model.build(shape)
    settings = doc.get("compile_config") if compile else None
    if settings:
        model.compile(optimizer=deserialize(settings["optimizer"], custom_objects),
                      loss=deserialize_value(settings.get("loss"), custom_objects),
                      metrics=deserialize_value(settings.get("metrics"), custom_objects))
    return model, settings

