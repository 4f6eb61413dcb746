"""Batch image augmentation (the ImageDataGenerator set), vectorised over NHWC batches and seeded.

Every function takes a batch ``x`` of shape (N, H, W, C) and a numpy Generator, draws one set of
parameters per image, and returns a new float array of the same shape; zero strength returns
the input values unchanged. :class:`Augment` chains them into a ``transform(xb, yb)`` for
:class:`fastconv.data.BatchLoader` (``fit`` data pipelines). Random draws come from
``fastconv.random.generator("augment")`` unless a seed or Generator is given.

>>> import numpy as np
>>> x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
>>> aug = Augment(horizontal_flip=True, shift=1, seed=0)
>>> aug(x, None)[0].shape
(2, 4, 4, 1)
>>> bool(np.array_equal(Augment(seed=0)(x, None)[0], x))   # nothing enabled: identity
True
"""
import numpy as np

from .. import random as _random
from . import kernels


def _check(x):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be an NHWC batch (N, H, W, C), got shape {x.shape}")
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


def random_flip(x, rng, horizontal=True, vertical=False, p=0.5):
    """Mirror each image left-right (and/or up-down) with probability `p`."""
    x = _check(x)
    n = len(x)
    h_mask = rng.random(n) < p if horizontal else np.zeros(n, bool)
    v_mask = rng.random(n) < p if vertical else np.zeros(n, bool)
    if x.dtype == np.float32:  # the compiled batch kernel: one pass, GIL released
        return kernels.flip(x, h_mask, v_mask)
    x = x.copy()
    x[h_mask] = x[h_mask, :, ::-1]
    x[v_mask] = x[v_mask, ::-1]
    return x


def random_shift(x, rng, max_shift, fill=0.0):
    """Translate each image by whole pixels, independently in y and x, uniform in
    ``[-max_shift, max_shift]`` (an int, or a (dy, dx) pair); uncovered pixels get `fill`.
    This is also "crop with padding": pad by `max_shift`, then crop a random window."""
    x = _check(x)
    dy, dx = (max_shift, max_shift) if np.isscalar(max_shift) else max_shift
    if dy == 0 and dx == 0:
        return x.copy()
    n, h, w, _ = x.shape
    sy = rng.integers(-dy, dy + 1, n)
    sx = rng.integers(-dx, dx + 1, n)
    padded = np.pad(x, ((0, 0), (dy, dy), (dx, dx), (0, 0)), constant_values=fill)
    # one gather for the whole batch: per-image window origins broadcast against the H, W grid
    rows = (dy - sy)[:, None] + np.arange(h)[None, :]          # (N, H)
    cols = (dx - sx)[:, None] + np.arange(w)[None, :]          # (N, W)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_crop_with_padding(x, rng, padding=4, fill=0.0):
    """Zero-pad by `padding` on each side and crop back to the original size at a random place
    (the CIFAR recipe); same distribution as :func:`random_shift` with ``max_shift=padding``."""
    return random_shift(x, rng, padding, fill)


def random_brightness(x, rng, max_delta, value_range=(0.0, 1.0)):
    """Add one uniform offset in ``[-max_delta, max_delta]`` per image, clipped to `value_range`."""
    x = _check(x)
    if max_delta == 0:
        return x.copy()
    delta = rng.uniform(-max_delta, max_delta, len(x)).astype(x.dtype)
    return np.clip(x + delta[:, None, None, None], *value_range).astype(x.dtype)


def affine(x, theta, scale, shift=None, fill=0.0):
    """Rotate each image by `theta[i]` radians (counter-clockwise), scale it by `scale[i]` (> 1
    enlarges) about its centre and move it by `shift[i]` = (dy, dx) pixels; bilinear, `fill`
    outside the source image. theta, scale: (N,) arrays; shift: (N, 2) or None.

    Runs on the batch warp kernel (fastconv.data.kernels.warp_affine: compiled, GIL released,
    threaded) in its "grid-constant" mode: a source position between the border pixels and one
    pixel outside blends the image with `fill` (a bilinear tap outside reads `fill`)."""
    x = _check(x)
    n, h, w, c = x.shape
    theta, scale = np.broadcast_to(theta, (n,)), np.broadcast_to(scale, (n,))
    ty, tx = (np.zeros(n), np.zeros(n)) if shift is None else np.asarray(shift, float).T
    cy, cx = (h - 1) / 2, (w - 1) / 2
    a, b = np.cos(theta) / scale, np.sin(theta) / scale
    # inverse map, output (row, col) -> source (row, col); a positive angle turns the picture
    # counter-clockwise as displayed (row 0 on top), as Keras does.
    m = np.empty((n, 2, 3))
    m[:, 0, 0], m[:, 0, 1] = a, b
    m[:, 0, 2] = cy - a * (cy + ty) - b * (cx + tx)
    m[:, 1, 0], m[:, 1, 1] = -b, a
    m[:, 1, 2] = cx + b * (cy + ty) - a * (cx + tx)
    out = kernels.warp_affine(x, m, fill_mode="grid-constant", cval=fill)
    return out if out.dtype == x.dtype else out.astype(x.dtype)


def random_affine(x, rng, rotation=0.0, zoom=0.0, fill=0.0):
    """Rotate by a uniform angle in ``[-rotation, rotation]`` degrees and zoom by a uniform factor
    in ``[1 - zoom, 1 + zoom]`` about the image centre, bilinear, `fill` outside the image."""
    x = _check(x)
    if rotation == 0 and zoom == 0:
        return x.copy()
    theta = np.deg2rad(rng.uniform(-rotation, rotation, len(x)))
    scale = rng.uniform(1 - zoom, 1 + zoom, len(x))
    return affine(x, theta, scale, None, fill)


class Augment:
    """A seeded augmentation pipeline, callable as ``transform(xb, yb) -> (xb', yb)``.

    Order: flips, rotation/zoom, shift, crop with padding, brightness. All strengths default to
    off. `seed`: an int for a private Generator, None for ``fastconv.random.generator("augment")``.
    """

    def __init__(self, horizontal_flip=False, vertical_flip=False, rotation=0.0, zoom=0.0,
                 shift=0, crop_padding=0, brightness=0.0, value_range=(0.0, 1.0), fill=0.0, seed=None):
        for name, v in (("rotation", rotation), ("zoom", zoom), ("brightness", brightness)):
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        if not 0 <= zoom < 1:
            raise ValueError(f"zoom must be in [0, 1), got {zoom}")
        for name, v in (("shift", shift), ("crop_padding", crop_padding)):
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be a non-negative int (pixels), got {v!r}")
        self.horizontal_flip, self.vertical_flip = horizontal_flip, vertical_flip
        self.rotation, self.zoom, self.shift, self.crop_padding = rotation, zoom, shift, crop_padding
        self.brightness, self.value_range, self.fill = brightness, value_range, fill
        self._rng = None if seed is None else np.random.default_rng(seed)

    @property
    def rng(self):
        return self._rng if self._rng is not None else _random.generator("augment")

    def __call__(self, xb, yb=None):
        rng = self.rng
        x = _check(xb)
        if self.horizontal_flip or self.vertical_flip:
            x = random_flip(x, rng, self.horizontal_flip, self.vertical_flip)
        if self.rotation or self.zoom:
            x = random_affine(x, rng, self.rotation, self.zoom, self.fill)
        if self.shift:
            x = random_shift(x, rng, self.shift, self.fill)
        if self.crop_padding:
            x = random_crop_with_padding(x, rng, self.crop_padding, self.fill)
        if self.brightness:
            x = random_brightness(x, rng, self.brightness, self.value_range)
        if x is xb:
            x = x.copy()  # never hand back the caller's array to be mutated
        return x, yb
