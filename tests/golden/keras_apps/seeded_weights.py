"""Weights fixed by layer and weight names alone, for the Keras-application goldens.

NumPy only: tests/golden/keras_apps/make_keras_apps.py (peers' Python, Keras) and
tests/test_zoo_keras_apps.py (fastconv, no TensorFlow) both call `seeded_weight`, so Keras's
committed predictions can be checked in CI without committing ~90 MB of weights. Each array
comes from a generator seeded by crc32 of "layer/weight": independent of layer order.

Kernels are He-scaled, depthwise ones LeCun-scaled; gamma/beta and biases are small random
values. BatchNormalization moving statistics drawn here are only a starting point: the goldens
store calibrated ones (make_keras_apps.calibrate), which the test loads over them.
"""
import zlib

import numpy as np


def _fan_in(weight_name, shape):
    if weight_name == "depthwise_kernel":           # (kh, kw, C, M): one channel per filter
        return shape[0] * shape[1]
    return int(np.prod(shape[:-1]))                 # conv (kh, kw, cin, cout), dense (in, out)


def seeded_weight(layer_name, weight_name, shape):
    """The array for weight `weight_name` of layer `layer_name` with `shape` (float32; int64 for count)."""
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(zlib.crc32(f"{layer_name}/{weight_name}".encode()))
    if weight_name == "count":                      # Normalization's sample count: no effect on outputs
        return np.zeros(shape, np.int64)
    if weight_name in ("gamma", "moving_variance"):
        v = rng.uniform(0.6, 1.4, shape)
    elif weight_name in ("beta", "bias", "moving_mean"):
        v = rng.uniform(-0.2, 0.2, shape)
    elif weight_name == "mean":                     # Normalization of images rescaled to [0, 1]
        v = rng.uniform(0.35, 0.65, shape)
    elif weight_name == "variance":
        v = rng.uniform(0.04, 0.09, shape)
    elif weight_name == "depthwise_kernel":         # LeCun variance 1 / fan_in: in SeparableConv2D
        limit = np.sqrt(3.0 / _fan_in(weight_name, shape))  # no ReLU sits between it and the pointwise
        v = rng.uniform(-limit, limit, shape)
    elif weight_name.endswith("kernel"):
        limit = np.sqrt(6.0 / _fan_in(weight_name, shape))  # uniform with He's variance 2 / fan_in
        v = rng.uniform(-limit, limit, shape)
    else:
        raise ValueError(f"no rule for weight {weight_name!r} of layer {layer_name!r}")
    return v.astype(np.float32)
