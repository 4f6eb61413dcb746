"""Weight initializers with Keras formulas: callables `(shape, dtype="float32") -> ndarray`.

Unseeded initializers draw from `fastconv.random.generator("init")`, so `fastconv.set_seed`
makes every model start from the same weights; a seeded one (`seed=int`) returns the same
values on every call, as Keras documents.

Fans (Keras): Dense kernel (in, out) -> fan_in=in, fan_out=out; conv kernel HWIO
(kh, kw, cin, cout) -> fan_in = kh*kw*cin, fan_out = kh*kw*cout.

>>> w = GlorotUniform(seed=0)((3, 3, 4, 8)); w.dtype, float(abs(w).max()) <= (6 / (36 + 72)) ** 0.5
(dtype('float32'), True)
"""
import math
import warnings

import numpy as np

from . import random as _random
from .saving import serialization as _serialization


def compute_fans(shape):
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(rng, shape, mean, stddev):
    """Normal draws re-sampled until within two standard deviations (Keras/TF truncation)."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev + mean


class Initializer(_serialization.RecordsArguments):
    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed

    def _rng(self):
        return _random.generator("init") if self.seed is None else np.random.default_rng(self.seed)

    def __call__(self, shape, dtype="float32"):
        shape = _check_shape(shape)
        return np.asarray(self._sample(shape), dtype=dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return _serialization.from_config_arguments(cls, config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


def _check_shape(shape):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must not have negative dimensions, got {shape}")
    return shape


class Zeros(Initializer):
    def _sample(self, shape):
        return np.zeros(shape)


class Ones(Initializer):
    def _sample(self, shape):
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value=0.0):
        super().__init__()
        self.value = value

    def _sample(self, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def _sample(self, shape):
        return self._rng().normal(self.mean, self.stddev, shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def _sample(self, shape):
        return self._rng().uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class TruncatedNormal(Initializer):
    """Normal(mean, stddev) with values beyond two standard deviations re-drawn."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def _sample(self, shape):
        return _truncated_normal(self._rng(), shape, self.mean, self.stddev)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class VarianceScaling(Initializer):
    """Draws with variance scale / n, n = fan_in, fan_out or their mean (mode). Distributions:
    'truncated_normal' (stddev sqrt(scale/n) / 0.8796..., the std of a unit normal truncated
    at ±2, so the kept values have the intended variance), 'untruncated_normal', 'uniform'
    (limit sqrt(3 * scale / n))."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if mode not in self._MODES:
            raise ValueError(f"mode must be one of {self._MODES}, got {mode!r}")
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in self._DISTS:
            raise ValueError(f"distribution must be one of {self._DISTS}, got {distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def _sample(self, shape):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        var = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "truncated_normal":
            return _truncated_normal(rng, shape, 0.0, math.sqrt(var) / 0.87962566103423978)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(var), shape)
        limit = math.sqrt(3.0 * var)
        return rng.uniform(-limit, limit, shape)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


def _variant(name, scale, mode, distribution):
    def __init__(self, seed=None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed)

    def get_config(self):
        return {"seed": self.seed}

    doc = f"VarianceScaling(scale={scale}, mode={mode!r}, distribution={distribution!r})."
    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config, "__doc__": doc})


GlorotUniform = _variant("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _variant("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
HeUniform = _variant("HeUniform", 2.0, "fan_in", "uniform")
HeNormal = _variant("HeNormal", 2.0, "fan_in", "truncated_normal")
LecunUniform = _variant("LecunUniform", 1.0, "fan_in", "uniform")
LecunNormal = _variant("LecunNormal", 1.0, "fan_in", "truncated_normal")

_BY_NAME = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal, "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
}


# Keras 2 short names, still found in older scripts (Keras 2 defaults: uniform in
# [-0.05, 0.05], normal with stddev 0.05 -- the same as ours).
_KERAS2_NAMES = {"uniform": ("random_uniform", RandomUniform), "normal": ("random_normal", RandomNormal),
                 "zero": ("zeros", Zeros), "one": ("ones", Ones)}


def _snake(name):
    import re
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def get(identifier):
    """An initializer from a Keras name ('glorot_uniform', 'GlorotUniform', 'zeros', ...), a
    config dict {'class_name', 'config'}, an instance or any callable (returned as is)."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        cls = _BY_NAME.get(_snake(str(identifier.get("class_name", ""))))
        if cls is None:
            raise ValueError(f"Could not interpret initializer identifier: {identifier!r}")
        return cls(**identifier.get("config", {}))
    if isinstance(identifier, str):
        if identifier in _KERAS2_NAMES:
            modern, cls = _KERAS2_NAMES[identifier]
            warnings.warn(f"initializer {identifier!r} is a Keras 2 name; use {modern!r}",
                          DeprecationWarning, stacklevel=2)
            return cls()
        key = identifier if identifier in _BY_NAME else _snake(identifier)
        cls = _BY_NAME.get(key)
        if cls is None:
            raise ValueError(f"Could not interpret initializer identifier: {identifier!r}; "
                             f"known names: {sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret initializer identifier: {identifier!r}")
