"""FALLBACK ONLY: a minimal stand-in for `fastconv.initializers` (branch `training`), used by
layer.py until that module is merged. Delete once `fastconv.initializers` exists."""
import numpy as np

from .. import random


def _fans(shape):
    if len(shape) < 2:
        return (shape[0] if shape else 1,) * 2
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def get(identifier):
    if callable(identifier):
        return identifier
    name = str(identifier).lower()
    if name == "zeros":
        return lambda shape, dtype="float32": np.zeros(shape, dtype)
    if name == "ones":
        return lambda shape, dtype="float32": np.ones(shape, dtype)
    if name == "glorot_uniform":
        def glorot(shape, dtype="float32"):
            fan_in, fan_out = _fans(shape)
            lim = np.sqrt(6.0 / (fan_in + fan_out))
            return random.generator("init").uniform(-lim, lim, shape).astype(dtype)
        return glorot
    if name == "he_normal":
        def he(shape, dtype="float32"):
            std = np.sqrt(2.0 / _fans(shape)[0])
            return (random.generator("init").standard_normal(shape) * std).astype(dtype)
        return he
    raise ValueError(f"unknown initializer {identifier!r}")
