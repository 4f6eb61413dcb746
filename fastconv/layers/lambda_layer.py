"""Lambda(function, output_shape=None, mask=None, arguments=None): wraps a Python function of
Tensors (differentiable through the autograd ops it uses) as a layer; `arguments` are extra
keyword arguments, and a function with a `training` parameter receives the training flag.

Output shapes come from `output_shape` (a shape without the batch axis, or a function of the
input shape), else from a dry run of the function on zeros.

Configurations are data, never code: get_config stores only the function's name, and
from_config rebuilds the layer only when `custom_objects` maps that name to the function;
otherwise it raises a ValueError saying so (a model file cannot smuggle code in).

>>> import numpy as np
>>> from fastconv import layers
>>> layers.Lambda(lambda t: t * 2)(np.ones((1, 2), np.float32)).numpy()
array([[2., 2.]], dtype=float32)
"""
import inspect

from .layer import Layer


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
        return {**super().get_config(), "function": getattr(self.function, "__name__", repr(self.function)),
                "output_shape": getattr(shape, "__name__", shape) if callable(shape) else shape,
                "arguments": self.arguments}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        objects = custom_objects or {}
        for key in ("function", "output_shape"):
            value = config.get(key)
            if isinstance(value, str):
                if value not in objects:
                    raise ValueError(
                        f"Lambda layer {config.get('name')!r}: its configuration stores only the name of "
                        f"its {key} ({value!r}), not code (fastconv files are data, never code); pass the "
                        f"function itself: from_config(config, custom_objects={{{value!r}: fn}}), or "
                        f"rebuild the model in Python and load its weights")
                config[key] = objects[value]
        return cls(**config)
