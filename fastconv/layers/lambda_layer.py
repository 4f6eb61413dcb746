"""Lambda(function, output_shape=None, mask=None, arguments=None): wraps a Python function of
Tensors (differentiable through the autograd ops it uses) as a layer; `arguments` are extra
keyword arguments, and a function with a `training` parameter receives the training flag.

Output shapes come from `output_shape` (a shape without the batch axis, or a function of the
input shape), else from a dry run of the function on zeros.

Configurations are data, never code: get_config stores only the function's name (its
registered "package>name" when registered with fastconv.saving.register_keras_serializable),
and from_config rebuilds the layer only when `custom_objects`, a custom_object_scope or the
registry maps that name to the function; otherwise it raises a ValueError saying so (a model
file cannot smuggle code in). A function without a name to find it by (a `lambda`) cannot be
saved at all: get_config refuses it.

>>> import numpy as np
>>> from fastconv import layers
>>> layers.Lambda(lambda t: t * 2)(np.ones((1, 2), np.float32)).numpy()
array([[2., 2.]], dtype=float32)
"""
import inspect

from ..saving.serialization import get_registered_name, get_registered_object
from .layer import Layer


def _function_name(fn, layer, key):
    name = get_registered_name(fn)
    if not isinstance(name, str) or name == "<lambda>" or not name.isidentifier() and ">" not in name:
        raise ValueError(f"Lambda layer {layer.name!r}: its {key} {fn!r} has no name to save it by, and "
                         f"fastconv files hold data, never code; use a named function registered with "
                         f"@fastconv.saving.register_keras_serializable() (or pass it as custom_objects "
                         f"when loading), or rebuild the model in code and load only its weights")
    return name


class Lambda(Layer):
    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda needs a callable, got {type(function).__name__}: {function!r}")
        if mask is not None:
            raise NotImplementedError("Lambda(mask=...) is not supported (fastconv has no masking)")
        self.function, self.output_shape_arg = function, output_shape
        self.arguments = dict(arguments or {})
        try:
            self._wants_training = "training" in inspect.signature(function).parameters
        except (TypeError, ValueError):
            self._wants_training = False

    def call(self, inputs, training=None):
        kwargs = dict(self.arguments)
        if self._wants_training:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)

    def compute_output_shape(self, input_shape):
        spec = self.output_shape_arg
        if spec is None:
            return super().compute_output_shape(input_shape)
        if callable(spec):
            return tuple(spec(input_shape))
        batch = input_shape[0][0] if isinstance(input_shape, list) else input_shape[0]
        return (batch,) + tuple(spec)

    def get_config(self):
        shape = self.output_shape_arg
        # Not Layer.get_config: its recorded arguments hold the function object itself.
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype,
                "function": _function_name(self.function, self, "function"),
                "output_shape": _function_name(shape, self, "output_shape") if callable(shape) else shape,
                "mask": None, "arguments": self.arguments}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("function", "output_shape"):
            value = config.get(key)
            if isinstance(value, str):
                found = get_registered_object(value, custom_objects)
                if found is None:
                    raise ValueError(
                        f"Lambda layer {config.get('name')!r}: its configuration stores only the name of "
                        f"its {key} ({value!r}), not code (fastconv files are data, never code); pass the "
                        f"function itself: from_config(config, custom_objects={{{value!r}: fn}}), or "
                        f"rebuild the model in Python and load its weights")
                config[key] = found
        return cls(**config)
