"""Helpers shared by the preprocessing layers (Resizing, CenterCrop, Random*): host-drawn
random numbers moved to the input's device, and a differentiable resize built from gathers.

Everything here composes existing autograd ops (getitem, mul, add), so it runs unchanged on
the numpy, cpu and cuda backends and its gradient is the ops' own.
"""
import numpy as np

from .. import random
from ..autograd import Tensor
from ..data import kernels
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


def aspect_pad(h, w, out_h, out_w):
    """(top, left): the rows added above and below and the columns left and right of an h x w
    image to reach the aspect ratio out_w / out_h (Keras's pad_to_aspect_ratio: the same count
    on both sides, so an odd difference comes out one short)."""
    return (max(h, int(w * out_h / out_w)) - h) // 2, (max(w, int(h * out_w / out_h)) - w) // 2


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


_CUBIC_TABLE = 1024  # TF samples the cubic kernel at multiples of 1/1024 (a lookup table)


def _bicubic_taps(n_in, n_out):
    """(indices (4, n_out), weights (4, n_out) float32): TF's half-pixel bicubic (Keys, a = -0.5),
    the fraction rounded to 1/1024 as its table does; taps outside the image get weight 0 and
    the rest are renormalised to sum to 1 (TF's rule since half_pixel_centers)."""
    a = -0.5
    scale = np.float32(n_in) / np.float32(n_out)
    pos = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    base = np.floor(pos)
    step = np.rint((pos - base) * np.float32(_CUBIC_TABLE)).astype(np.int64)

    def near(t):  # |t| <= 1, t a float32 table point, computed in double as TF's table is
        t = t.astype(np.float64)
        return (((a + 2) * t - (a + 3)) * t * t + 1).astype(np.float32)

    def far(t):  # 1 < |t| < 2
        t = (t + np.float32(1)).astype(np.float64)
        return ((((a * t - 5 * a) * t + 8 * a) * t) - 4 * a).astype(np.float32)
    t0 = (step / _CUBIC_TABLE).astype(np.float32)
    t1 = ((_CUBIC_TABLE - step) / _CUBIC_TABLE).astype(np.float32)
    weights = np.stack([far(t0), near(t0), near(t1), far(t1)])
    idx = base.astype(np.int64)[None, :] + np.arange(-1, 3)[:, None]
    inside = (idx >= 0) & (idx <= n_in - 1)
    weights = np.where(inside, weights, np.float32(0))
    total = weights.sum(axis=0, dtype=np.float32)
    ok = np.abs(total) >= 1000 * np.finfo(np.float32).tiny
    weights = np.where(ok, weights * (np.float32(1) / np.where(ok, total, 1)), weights)
    return np.clip(idx, 0, n_in - 1), weights.astype(np.float32)


def _area_taps(n_in, n_out):
    """tf.image.resize "area": each output cell the mean of the input area it covers, border
    cells weighted by the fraction covered (fastconv.data's area kernel's taps)."""
    from ..data.kernels_numpy import area_taps
    idx, wts, _, scale = area_taps(n_in, n_out)
    return idx.T, (wts / scale).T.astype(np.float32)


def _lanczos_taps(n_in, n_out, radius):
    """tf.image.resize "lanczos3"/"lanczos5" without antialiasing (its scale_and_translate):
    output o samples the input at s = (o + 0.5) * in / out (pixel centres at i + 0.5), taps i
    with |i + 0.5 - s| within the radius, clamped to the image, weights the Lanczos window
    renormalised to sum to 1. Returns (indices, weights), each (2 * radius + 1, n_out)."""
    inv_scale = np.float32(1) / (np.float32(n_out) / np.float32(n_in))
    span = min(2 * radius + 1, n_in)
    idx = np.zeros((span, n_out), np.int64)
    weights = np.zeros((span, n_out), np.float32)
    for o in range(n_out):
        sample = (np.float32(o) + np.float32(0.5)) * inv_scale
        first = int(np.ceil(sample - np.float32(radius) - np.float32(0.5)))
        last = int(np.floor(sample + np.float32(radius) - np.float32(0.5)))
        first, last = min(max(first, 0), n_in - 1), min(max(last, 0), n_in - 1) + 1
        t = np.abs(np.arange(first, last, dtype=np.float32) + np.float32(0.5) - sample).astype(np.float32)
        pi = np.float32(3.14159265359)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = (np.float32(radius) * np.sin(pi * t) * np.sin(pi * t / np.float32(radius)) / (pi * pi * t * t))
        w = np.where(t <= np.float32(1e-3), np.float32(1), np.where(t > radius, np.float32(0), w)).astype(np.float32)
        total = w.sum(dtype=np.float32)
        if abs(total) >= 1000 * np.finfo(np.float32).tiny:
            w = w * (np.float32(1) / total)
        idx[:last - first, o] = np.arange(first, last)
        weights[:last - first, o] = w
    return idx, weights


def _along(x, axis, n_out, interpolation):
    n_in = x.shape[axis]
    if n_in == n_out and interpolation in ("bilinear", "nearest", "area"):
        return x  # half-pixel centres map every pixel onto itself (area: one full cell each)
    xp = array_module(x.data)

    def take(idx):
        index = [slice(None)] * 4
        index[axis] = xp.asarray(idx)
        return x[tuple(index)]

    shape = [1, 1, 1, 1]
    shape[axis] = n_out
    if interpolation in ("bicubic", "area", "lanczos3", "lanczos5"):
        if interpolation.startswith("lanczos"):
            idx, weights = _lanczos_taps(n_in, n_out, int(interpolation[-1]))
        else:
            idx, weights = (_bicubic_taps if interpolation == "bicubic" else _area_taps)(n_in, n_out)
        out = None
        for k in range(len(idx)):
            term = take(idx[k]) * like(x, weights[k].reshape(shape))
            out = term if out is None else out + term
        return out
    lo, hi, frac = _axis_weights(n_in, n_out, interpolation)
    low = take(lo)
    if hi is None:
        return low
    # low + (high - low) * frac, TensorFlow's form: a NaN neighbour poisons its outputs even
    # at weight 0, as it does there.
    return low + (take(hi) - low) * like(x, frac.reshape(shape))


def resize(x, height, width, interpolation="bilinear"):
    """NHWC Tensor -> (N, height, width, C), rows then columns (bilinear is separable)."""
    return _along(_along(x, 1, height, interpolation), 2, width, interpolation)


def crop(x, top, left, height, width):
    return x[:, top:top + height, left:left + width, :]


def keras_factor(layer, f, name, low=-1.0, high=1.0, low_open=False):
    """Keras 3's factor argument -> (lower, upper): a number f gives (-|f|, |f|), a pair is
    sorted; every number must lie in [low, high] ((low, high] with low_open)."""
    pair = tuple(f) if isinstance(f, (tuple, list)) else None
    values = pair if pair is not None else (f,)
    bad = (pair is not None and len(pair) != 2) or not all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)
    if not bad:
        bad = any(v > high or v < low or (low_open and v == low) for v in values)
    if bad:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ValueError(f"{type(layer).__name__}: {name} must be a number or a pair of numbers in {interval}, "
                         f"got {f!r}")
    if pair is None:
        return -abs(float(f)), abs(float(f))
    lo, hi = sorted(float(v) for v in pair)
    return lo, hi


def check_channels_last(layer, data_format):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{type(layer).__name__}: only data_format='channels_last' is supported, "
                         f"got {data_format!r}")


class HostAugmentLayer(Layer):
    """Base of RandomFlip/Rotation/Zoom/Translation: one transform per image drawn on the host
    and applied by fastconv.data during training, and on a direct call without `training` (as
    Keras 3); identity with training=False and in predict/evaluate. They belong at the model
    input: their output carries no gradient back to their input. Like Keras 3's, they take one
    image (H, W, C) as well as a batch."""

    def __init__(self, seed=None, fill_value=0.0, data_format=None, **kwargs):
        kwargs["trainable"] = False  # also when a config (which records trainable) rebuilds it
        super().__init__(**kwargs)
        check_channels_last(self, data_format)
        self.seed, self.fill_value = seed, float(fill_value)

    def call(self, inputs, training=True):  # Keras 3: augments unless told otherwise
        if not training:
            return inputs
        x = inputs.data if isinstance(inputs, Tensor) else np.asarray(inputs)
        if x.ndim not in (3, 4):
            raise ValueError(f"{type(self).__name__} expects NHWC input (N, H, W, C) or one image (H, W, C), "
                             f"got shape {x.shape}")
        if x.ndim == 3:
            return Tensor(self.transform(x[None], generator(self))[0])
        return Tensor(self.transform(x, generator(self)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "fill_value": self.fill_value}


# Keras 3's fill modes as fastconv.data.kernels.warp_affine names them (scipy.ndimage's names:
# Keras's "constant" blends the border with fill_value, its "wrap" has period H and W)
KERAS_FILL_MODES = {"reflect": "reflect", "wrap": "grid-wrap", "constant": "grid-constant", "nearest": "nearest"}
WARP_INTERPOLATIONS = ("bilinear", "nearest")


class HostWarpLayer(HostAugmentLayer):
    """RandomRotation/Zoom/Translation: an affine warp per image with Keras 3's fill_mode,
    interpolation and fill_value (defaults "reflect", "bilinear", 0.0, as there)."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, **kwargs):
        super().__init__(seed=seed, fill_value=fill_value, **kwargs)
        if fill_mode not in KERAS_FILL_MODES:
            raise ValueError(f"{type(self).__name__}: fill_mode must be one of {tuple(KERAS_FILL_MODES)}, "
                             f"got {fill_mode!r}")
        if interpolation not in WARP_INTERPOLATIONS:
            raise ValueError(f"{type(self).__name__}: interpolation must be one of {WARP_INTERPOLATIONS}, "
                             f"got {interpolation!r}")
        self.fill_mode, self.interpolation = fill_mode, interpolation

    def warp(self, x, linear, shift=None):
        """Output pixel p = (row, col) samples ``linear @ (p - centre) + centre - shift`` with
        centre ((H-1)/2, (W-1)/2): Keras 3's matrices written rows first. linear: (N, 2, 2),
        shift: (N, 2) (rows, cols) or None."""
        n, h, w = x.shape[:3]
        centre = np.array([(h - 1) / 2, (w - 1) / 2])
        m = np.empty((n, 2, 3))
        m[:, :, :2] = linear
        m[:, :, 2] = centre - linear @ centre
        if shift is not None:
            m[:, :, 2] -= shift
        out = kernels.warp_affine(x, m, fill_mode=KERAS_FILL_MODES[self.fill_mode], cval=self.fill_value,
                                  interpolation=self.interpolation)
        # float32 from the kernel; a float64 batch stays float64 (integer images become float32, as in Keras)
        return out.astype(x.dtype) if x.dtype.kind == "f" and x.dtype != out.dtype else out

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "interpolation": self.interpolation}
