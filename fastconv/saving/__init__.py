"""Files: weights (.npz keyed by hierarchical path), whole models (.keras), objects as JSON
config (serialization), and the one atomic file-writing helper that everything fastconv
writes goes through."""
from .atomic import atomic_write  # noqa: F401
from .model_file import load_model, save_model  # noqa: F401
from .serialization import (  # noqa: F401
    CustomObjectScope, custom_object_scope, deserialize, get_custom_objects, get_registered_name,
    get_registered_object, register_keras_serializable, serialize)
from .serialization import deserialize as deserialize_keras_object  # noqa: F401
from .serialization import serialize as serialize_keras_object  # noqa: F401
from .weights import LoadStatus, load_weights, save_weights, weight_arrays, weight_paths  # noqa: F401
