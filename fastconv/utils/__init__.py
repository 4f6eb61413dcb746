"""Keras's `keras.utils` helpers, plus model inspection (output sizes, a per-layer shape
trace, receptive fields)."""
from ..data import image_dataset_from_directory  # noqa: F401
from ..random import set_seed as set_random_seed  # noqa: F401
from ..saving.serialization import (  # noqa: F401
    CustomObjectScope, custom_object_scope, deserialize as deserialize_keras_object, get_custom_objects,
    get_registered_name, get_registered_object, register_keras_serializable, serialize as serialize_keras_object)
from .numerical import normalize, to_categorical  # noqa: F401
from .plot import model_to_graph, plot_model  # noqa: F401
from .shapes import conv_output_size, receptive_field, shape_trace  # noqa: F401
