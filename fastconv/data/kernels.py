"""Batch image kernels of the input pipeline: resize, crop/flip, affine warp, colour jitter and
uint8 -> float32 conversion, over NHWC batches (uint8 or float32).

Each function validates its arguments, then runs the compiled Cython kernel
(``fastconv.data._kernels``: GIL released, the batch split over ``fastconv.get_num_threads()``
OpenMP threads) or, when that extension was not built, its NumPy twin in
:mod:`fastconv.data.kernels_numpy` (same formulas; the tests hold one to the other).
``implementation="numpy"`` forces the NumPy path.

>>> import numpy as np
>>> x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
>>> resize(x, (2, 2)).shape, resize(x, (2, 2)).dtype.name
((2, 2, 2, 3), 'float32')
"""
import numpy as np

from . import kernels_numpy as _np_kernels

try:  # the compiled kernels are optional: pip install . builds them, the NumPy path is the fallback
    from . import _kernels as _compiled
except ImportError:  # pragma: no cover - depends on the build
    _compiled = None

RESIZE_METHODS = ("bilinear", "nearest", "area")
# ImageDataGenerator's modes (scipy.ndimage.affine_transform(order=1) semantics) ...
FILL_MODES = ("constant", "nearest", "reflect", "wrap")
# ... and every mode warp_affine takes: also the two Keras 3's preprocessing layers need
WARP_FILL_MODES = tuple(_np_kernels.FILL_MODES)
WARP_INTERPOLATIONS = tuple(_np_kernels.INTERPOLATIONS)
_DTYPES = (np.uint8, np.float32)


def compiled_available():
    """True when the Cython extension fastconv.data._kernels is importable."""
    return _compiled is not None


def _use_compiled(implementation):
    if implementation not in ("auto", "cython", "numpy"):
        raise ValueError(f"implementation must be 'auto', 'cython' or 'numpy', got {implementation!r}")
    if implementation == "cython" and _compiled is None:
        raise ImportError("fastconv.data._kernels is not built (it needs Cython at build time: "
                          "pip install cython, then reinstall fastconv or rebuild build-w)")
    return implementation != "numpy" and _compiled is not None


def _empty(shape, dtype):
    """np.empty for a kernel output; filled with NaN (float) or 0xA5 (uint8) while the project's
    output poisoning is on (the tests turn it on: a kernel leaving pixels unwritten fails them)."""
    out = np.empty(shape, dtype)
    try:
        from .. import _C
        poison = _C._get_poison_outputs()
    except (ImportError, AttributeError):  # the core module is optional for these kernels
        poison = False
    if poison:
        out.fill(np.nan if out.dtype.kind == "f" else 0xA5)
    return out


def _threads():
    from ..config import get_num_threads
    return max(1, int(get_num_threads()))


def _batch(x, name="x", dtypes=_DTYPES):
    """`x` as a C-contiguous NHWC batch of one of `dtypes` (float64 and other numeric input is
    converted to float32)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be an NHWC batch (N, H, W, C), got shape {x.shape}")
    if x.dtype not in dtypes:
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise TypeError(f"{name} must hold numbers ({' or '.join(np.dtype(d).name for d in dtypes)}), "
                            f"got dtype {x.dtype}")
        x = x.astype(np.float32 if np.float32 in dtypes else dtypes[0])
    if 0 in x.shape[1:]:
        raise ValueError(f"{name} must have non-empty height, width and channels, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _size(size, name="size"):
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of positive ints (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be a pair of positive ints (height, width), got {size!r}")
    return h, w


def _per_image(v, n, name, dtype):
    a = np.asarray(v, dtype)
    if a.ndim == 0:
        a = np.full(n, a, dtype)
    if a.shape != (n,):
        raise ValueError(f"{name} must be a scalar or one value per image, shape ({n},), got shape {a.shape}")
    return np.ascontiguousarray(a)


def resize(x, size, method="bilinear", implementation="auto", out=None):
    """Resize a batch to `size` = (height, width) as ``tf.image.resize(x, size, method)`` does
    (``antialias=False``, half-pixel centres). Returns float32 for "bilinear" and "area" and the
    input dtype for "nearest" (as TF does). `out`: a C-contiguous array of the result's shape
    and dtype to write into (and return), e.g. a row of a batch being filled."""
    x = _batch(x)
    oh, ow = _size(size)
    if method not in RESIZE_METHODS:
        raise ValueError(f"method must be one of {RESIZE_METHODS}, got {method!r}")
    n, h, w, c = x.shape
    dtype = x.dtype if method == "nearest" else np.dtype(np.float32)
    if out is not None:
        if not isinstance(out, np.ndarray) or out.shape != (n, oh, ow, c) or out.dtype != dtype \
                or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"out must be a writeable C-contiguous {dtype} array of shape {(n, oh, ow, c)}, got "
                             f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
    if not _use_compiled(implementation):
        result = getattr(_np_kernels, "resize_" + method)(x, (oh, ow))
        if out is None:
            return result
        out[...] = result
        return out
    if out is None:
        out = _empty((n, oh, ow, c), dtype)
    if method == "nearest":
        _compiled.gather_rows_cols(x, out, _np_kernels.nearest_taps(h, oh), _np_kernels.nearest_taps(w, ow),
                                   _threads())
        return out
    if method == "bilinear":
        threads = _threads()
        work = np.empty((threads, 2, ow * c), np.float32)  # two x-interpolated rows per thread
        _compiled.resize_bilinear(x, out, *_np_kernels.bilinear_taps(h, oh), *_np_kernels.bilinear_taps(w, ow),
                                  work, threads)
    else:
        threads = _threads()
        work = np.empty((threads, 2 * c), np.float32)  # per-thread sums, allocated here: no malloc in the loop
        yi, yw, yn, sy = _np_kernels.area_taps(h, oh)
        xi, xw, xn, sx = _np_kernels.area_taps(w, ow)
        _compiled.resize_area(x, out, yi, yw, yn, xi, xw, xn, np.float32(1) / (sy * sx), work, threads)
    return out


def crop_flip(x, top, left, size, horizontal_flip=False, vertical_flip=False, implementation="auto"):
    """Per image b: the `size` window of x[b] whose top-left corner is (top[b], left[b]),
    mirrored left-right where horizontal_flip[b] and up-down where vertical_flip[b]. `top`,
    `left` and the flips are scalars (same for every image) or one value per image."""
    x = _batch(x)
    n, h, w, c = x.shape
    oh, ow = _size(size)
    top, left = _per_image(top, n, "top", np.int64), _per_image(left, n, "left", np.int64)
    hf = _per_image(horizontal_flip, n, "horizontal_flip", bool).view(np.uint8)
    vf = _per_image(vertical_flip, n, "vertical_flip", bool).view(np.uint8)
    bad = (top < 0) | (left < 0) | (top + oh > h) | (left + ow > w)
    if bad.any():
        b = int(np.argmax(bad))
        raise ValueError(f"crop window {oh}x{ow} at (top={top[b]}, left={left[b]}) of image {b} leaves the "
                         f"{h}x{w} image")
    if not _use_compiled(implementation):
        return _np_kernels.crop_flip(x, top, left, (oh, ow), hf, vf)
    out = _empty((n, oh, ow, c), x.dtype)
    _compiled.crop_flip(x, out, top, left, hf, vf, _threads())
    return out


def flip(x, horizontal=False, vertical=False, implementation="auto"):
    """Mirror image b left-right where horizontal[b] and up-down where vertical[b]."""
    x = _batch(x)
    return crop_flip(x, 0, 0, x.shape[1:3], horizontal, vertical, implementation)


def warp_affine(x, matrices, size=None, fill_mode="nearest", cval=0.0, interpolation="bilinear",
                implementation="auto"):
    """Affine warp, float32 out. matrices: (N, 2, 3) or (2, 3) (the same for all); the output
    pixel (row, col) samples the input at ``M @ (row, col, 1)`` (rows first), bilinear or
    "nearest" (the position rounded half away from zero). `size`: output (height, width),
    default the input's.

    Positions outside the image follow `fill_mode`, named as in scipy.ndimage:

    - "constant", "nearest", "reflect", "wrap": exactly ``scipy.ndimage.affine_transform(order=1,
      mode=fill_mode)``, which Keras's ImageDataGenerator uses: "constant" gives `cval` outside
      [0, H-1] x [0, W-1], "nearest" clamps, "reflect" mirrors (d c b a | a b c d), "wrap" is
      periodic with scipy's period of H-1 and W-1;
    - "grid-constant": the image extended by `cval` (a bilinear tap outside reads `cval`, so
      border pixels blend with it), "grid-wrap": periodic with period H and W. With "reflect" and
      "nearest" these are the fill modes of Keras 3's RandomRotation/Zoom/Translation
      (constant -> grid-constant, wrap -> grid-wrap)."""
    x = _batch(x)
    n, h, w, c = x.shape
    oh, ow = (h, w) if size is None else _size(size)
    m = np.asarray(matrices, np.float64)
    if m.shape == (2, 3):
        m = np.broadcast_to(m, (n, 2, 3))
    if m.shape != (n, 2, 3):
        raise ValueError(f"matrices must have shape (N, 2, 3) = ({n}, 2, 3) or (2, 3), got {m.shape}")
    if fill_mode not in WARP_FILL_MODES:
        raise ValueError(f"fill_mode must be one of {WARP_FILL_MODES}, got {fill_mode!r}")
    if interpolation not in WARP_INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {WARP_INTERPOLATIONS}, got {interpolation!r}")
    if not np.isfinite(m).all():
        raise ValueError("matrices must be finite")
    m = np.ascontiguousarray(m)
    # an extension built before the grid- modes and nearest warps (WARP_API 2) takes neither
    compiled_new = getattr(_compiled, "WARP_API", 1) >= 2
    old_ok = fill_mode in FILL_MODES and interpolation == "bilinear"
    if not _use_compiled(implementation) or not (compiled_new or old_ok):
        return _np_kernels.warp_affine(x, m, (oh, ow), fill_mode, float(cval), interpolation)
    out = _empty((n, oh, ow, c), np.float32)
    if compiled_new:
        _compiled.warp_affine(x, out, m, _np_kernels.FILL_MODES[fill_mode], float(cval),
                              _np_kernels.INTERPOLATIONS[interpolation], _threads())
    else:
        _compiled.warp_affine(x, out, m, _np_kernels.FILL_MODES[fill_mode], float(cval), _threads())
    return out


def color_jitter(x, brightness=0.0, contrast=1.0, value_range=(0.0, 255.0), implementation="auto"):
    """``clip((x - mean) * contrast + mean + brightness, *value_range)`` in float32, with `mean`
    per image and channel (tf.image.adjust_contrast then adjust_brightness); brightness and
    contrast are scalars or one value per image."""
    x = _batch(x)
    n = len(x)
    br = _per_image(brightness, n, "brightness", np.float32)
    ct = _per_image(contrast, n, "contrast", np.float32)
    lo, hi = (np.float32(v) for v in value_range)
    if not lo <= hi:
        raise ValueError(f"value_range must be (low, high) with low <= high, got {value_range!r}")
    if not _use_compiled(implementation):
        return _np_kernels.color_jitter(x, br, ct, (lo, hi))
    out = _empty(x.shape, np.float32)
    threads = _threads()
    _compiled.color_jitter(x, out, br, ct, lo, hi, np.empty((threads, 2 * x.shape[3])), threads)
    return out


def to_float(x, rescale=1.0, mean=0.0, std=1.0, implementation="auto"):
    """uint8 batch -> float32 ``(x * rescale - mean) / std``; mean and std are scalars or one
    value per channel."""
    x = _batch(x, dtypes=(np.uint8,))
    c = x.shape[3]
    mean = np.ascontiguousarray(np.broadcast_to(np.asarray(mean, np.float32), (c,)))
    std = np.asarray(std, np.float32)
    if std.ndim > 1 or std.size not in (1, c):
        raise ValueError(f"std must be a scalar or one value per channel ({c},), got shape {std.shape}")
    if mean.ndim > 1:
        raise ValueError(f"mean must be a scalar or one value per channel ({c},)")
    if np.any(np.asarray(std) == 0):
        raise ValueError("std must be non-zero")
    inv_std = np.ascontiguousarray(np.broadcast_to(np.float32(1) / std, (c,)))
    if not _use_compiled(implementation):
        return _np_kernels.to_float(x, rescale, mean, inv_std)
    out = _empty(x.shape, np.float32)
    _compiled.to_float(x, out, float(rescale), mean, inv_std, _threads())
    return out
