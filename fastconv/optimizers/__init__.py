"""Optimizers with Keras 3 formulas and defaults. `get` resolves a name, a config dict or an
instance.

>>> import numpy as np
>>> class V:  # any object with a .data array works as a variable
...     def __init__(self, a): self.data, self.name = np.array(a, np.float32), "w"
>>> w = V([1.0, 2.0]); opt = get("sgd")
>>> _ = opt.apply_gradients([(np.array([1.0, -1.0], np.float32), w)]); w.data
array([0.99, 2.01], dtype=float32)
"""
from . import schedules
from .adagrad import Adagrad
from .adam import Adam
from .adamw import AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

_BY_NAME = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "schedules", "get"]


def get(identifier):
    """A fresh optimizer with Keras defaults from a name ('adam', 'SGD', ...), one from
    {'class_name': ..., 'config': {...}}, or `identifier` itself if it is an Optimizer."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        cls = _BY_NAME.get(str(identifier.get("class_name", "")).lower())
        if cls is None:
            raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}; "
                             f"known names: {sorted(_BY_NAME)}")
        return cls.from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}; "
                             f"known names: {sorted(_BY_NAME)}")
        return cls()
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r} "
                     "(expected a name, a config dict or an Optimizer)")
