"""Helpers shared by the preprocessing layers (Resizing, CenterCrop, Random*): host-drawn
random numbers moved to the input's device, and a differentiable resize built from gathers.

Everything here composes existing autograd ops (getitem, mul, add), so it runs unchanged on
the numpy, cpu and cuda backends and its gradient is the ops' own.
"""
import numpy as np

from .. import random
from ..autograd import Tensor
from ..functional import array_module
from .layer import Layer


def generator(layer):
    """A layer's Generator: its private one when built with `seed`, else the shared
    "augment" stream (looked up per call, since set_seed replaces it)."""
    return random.layer_generator(layer, "augment")


def like(x, host_array):
    """A host array as a constant Tensor on x's device, in x's dtype (a few numbers per
    batch: the upload is negligible and keeps the draws identical on every backend)."""
    xp = array_module(x.data)
    return Tensor(xp.asarray(np.asarray(host_array, dtype=x.dtype)))


def check_size(layer, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{type(layer).__name__}: {name} must be an int >= 1, got {value!r}")
    return int(value)


def aspect_crop(h, w, out_h, out_w):
    """The centred window (top, left, height, width) of an h x w image with the target
    aspect ratio out_w / out_h, as large as fits (Keras's crop_to_aspect_ratio)."""
    ch = max(min(h, int(w * out_h / out_w)), 1)
    cw = max(min(w, int(h * out_w / out_h)), 1)
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _axis_weights(n_in, n_out, interpolation):
    """Source indices and weights along one axis, TensorFlow's half-pixel centres
    (tf.image.resize with antialias=False)."""
    scale = n_in / n_out
    centres = (np.arange(n_out) + 0.5) * scale
    if interpolation == "nearest":
        idx = np.minimum(np.floor(centres), n_in - 1).astype(np.int64)
        return idx, None, None
    src = centres - 0.5
    lo_f = np.floor(src)
    lo = np.clip(lo_f, 0, n_in - 1).astype(np.int64)
    hi = np.clip(np.ceil(src), 0, n_in - 1).astype(np.int64)
    return lo, hi, src - lo_f


def _along(x, axis, n_out, interpolation):
    n_in = x.shape[axis]
    if n_in == n_out and interpolation in ("nearest", "bilinear"):
        return x  # half-pixel centres map every pixel onto itself
    lo, hi, frac = _axis_weights(n_in, n_out, interpolation)
    xp = array_module(x.data)

    def take(idx):
        index = [slice(None)] * 4
        index[axis] = xp.asarray(idx)
        return x[tuple(index)]
    low = take(lo)
    if hi is None:
        return low
    shape = [1, 1, 1, 1]
    shape[axis] = n_out
    # low + (high - low) * frac, TensorFlow's form: a NaN neighbour poisons its outputs even
    # at weight 0, as it does there.
    return low + (take(hi) - low) * like(x, frac.reshape(shape))


def resize(x, height, width, interpolation="bilinear"):
    """NHWC Tensor -> (N, height, width, C), rows then columns (bilinear is separable)."""
    return _along(_along(x, 1, height, interpolation), 2, width, interpolation)


def crop(x, top, left, height, width):
    return x[:, top:top + height, left:left + width, :]


def factor_range(f, name):
    lo, hi = (-f, f) if np.isscalar(f) else tuple(f)
    if lo > hi:
        raise ValueError(f"{name} range must be (low, high) with low <= high, got {f!r}")
    return float(lo), float(hi)


class HostAugmentLayer(Layer):
    """Base of RandomFlip/Rotation/Zoom/Translation: one transform per image drawn on the host
    and applied by fastconv.data.augment during training (identity otherwise). They belong at
    the model input: their output carries no gradient back to their input."""

    def __init__(self, seed=None, fill_value=0.0, **kwargs):
        kwargs["trainable"] = False  # also when a config (which records trainable) rebuilds it
        super().__init__(**kwargs)
        self.seed, self.fill_value = seed, float(fill_value)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        x = inputs.data if isinstance(inputs, Tensor) else np.asarray(inputs)
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects NHWC input (N, H, W, C), got shape {x.shape}")
        return Tensor(self.transform(x, generator(self)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "fill_value": self.fill_value}
