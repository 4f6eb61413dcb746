"""Keras's image helpers over the batch kernels: ``load_img``, ``img_to_array``,
``array_to_img``, ``save_img`` (atomic), ``smart_resize``, and ``resize``/``resize_with_pad``.

Shapes are (H, W, C) for one image or (N, H, W, C) for a batch; the resize helpers return
float32 ("bilinear", "area") or the input dtype ("nearest"), as tf.image.resize does.

- ``resize(images, size, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, fill_value)``
  follows ``keras.ops.image.resize`` (antialias off): cropping keeps the centred largest window of
  the target aspect ratio; padding centres the image on a `fill_value` canvas of that ratio.
- ``resize_with_pad(image, target_height, target_width, method)`` follows
  ``tf.image.resize_with_pad``: scale to fit inside, keeping the aspect ratio, then zero-pad.
- ``smart_resize(x, size, interpolation)`` = resize with ``crop_to_aspect_ratio=True`` (Keras).
Pillow is needed for files only (load_img, array_to_img, save_img).
"""
import os

import numpy as np

from ..saving.atomic import atomic_write
from . import kernels

_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
PIL_INTERPOLATION = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")


def require_pillow(what):
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{what} needs Pillow to read and write image files: pip install Pillow "
                          f"(or pip install 'fastconv[viz]')") from None
    return Image


def _as_batch(images, name="images"):
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must be one image (H, W, C) or a batch (N, H, W, C), got shape {x.shape}")
    return (x[None], True) if x.ndim == 3 else (x, False)


def _centre_window(height, width, target_h, target_w):
    """Keras's crop_to_aspect_ratio window: (top, left, crop_h, crop_w)."""
    crop_h = max(min(height, int(float(width * target_h) / target_w)), 1)
    crop_w = max(min(width, int(float(height * target_w) / target_h)), 1)
    return int(float(height - crop_h) / 2), int(float(width - crop_w) / 2), crop_h, crop_w


def resize(images, size, interpolation="bilinear", crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
           fill_value=0.0):
    """Resize one image or a batch to `size` = (height, width) (keras.ops.image.resize)."""
    x, single = _as_batch(images)
    th, tw = kernels._size(size)
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be True")
    n, h, w, c = x.shape
    if crop_to_aspect_ratio:
        top, left, ch, cw = _centre_window(h, w, th, tw)
        x = kernels.crop_flip(x, top, left, (ch, cw))
    elif pad_to_aspect_ratio:
        ph = max(h, int(float(w * th) / tw))
        pw = max(w, int(float(h * tw) / th))
        top, left = int(float(ph - h) / 2), int(float(pw - w) / 2)
        # Keras pads `top` rows on both sides (an odd difference loses its last row), likewise left
        canvas = np.full((n, h + 2 * top, w + 2 * left, c), fill_value, x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
        canvas[:, top:top + h, left:left + w] = x
        x = canvas
    out = kernels.resize(x, (th, tw), interpolation)
    return out[0] if single else out


def smart_resize(x, size, interpolation="bilinear"):
    """Resize to `size` without distorting: crop the centred window of the target aspect ratio
    first (Keras's smart_resize)."""
    return resize(x, size, interpolation, crop_to_aspect_ratio=True)


def resize_with_pad(image, target_height, target_width, method="bilinear"):
    """tf.image.resize_with_pad: fit inside (target_height, target_width) keeping the aspect
    ratio, then pad with zeros, the image centred (the odd pixel goes bottom/right)."""
    x, single = _as_batch(image, "image")
    th, tw = kernels._size((target_height, target_width), "(target_height, target_width)")
    h, w = x.shape[1:3]
    # float32 arithmetic, as TensorFlow does it
    ratio = max(np.float32(w) / np.float32(tw), np.float32(h) / np.float32(th))
    rh_f, rw_f = np.float32(h) / ratio, np.float32(w) / ratio
    rh, rw = max(int(np.floor(rh_f)), 1), max(int(np.floor(rw_f)), 1)
    top = max(0, int(np.floor((np.float32(th) - rh_f) / np.float32(2))))
    left = max(0, int(np.floor((np.float32(tw) - rw_f) / np.float32(2))))
    resized = kernels.resize(x, (rh, rw), method)
    out = np.zeros((len(x), th, tw, x.shape[3]), resized.dtype)
    out[:, top:top + rh, left:left + rw] = resized
    return out[0] if single else out


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False):
    """A PIL image from `path` (Keras's load_img): converted to `color_mode` ("grayscale", "rgb",
    "rgba") and, with `target_size` = (height, width), resized by Pillow with `interpolation`
    (after cropping the centred window of that aspect ratio when `keep_aspect_ratio`)."""
    Image = require_pillow("load_img")
    if color_mode not in _PIL_MODES:
        raise ValueError(f"color_mode must be one of {tuple(_PIL_MODES)}, got {color_mode!r}")
    if interpolation not in PIL_INTERPOLATION:
        raise ValueError(f"interpolation must be one of {PIL_INTERPOLATION}, got {interpolation!r}")
    if isinstance(path, (str, bytes, os.PathLike)):
        with open(path, "rb") as f:
            img = Image.open(f)
            img.load()
    else:  # a file-like object, as Keras accepts
        img = Image.open(path)
        img.load()
    if img.mode != _PIL_MODES[color_mode]:
        img = img.convert(_PIL_MODES[color_mode])
    if target_size is not None:
        th, tw = kernels._size(target_size, "target_size")
        if img.size != (tw, th):
            resample = getattr(Image, interpolation.upper())
            if keep_aspect_ratio:
                top, left, ch, cw = _centre_window(img.height, img.width, th, tw)
                img = img.crop((left, top, left + cw, top + ch))
            img = img.resize((tw, th), resample)
    return img


def img_to_array(img, data_format=None, dtype="float32"):
    """(H, W, C) array of a PIL image (grayscale gets C = 1)."""
    _check_format(data_format)
    x = np.asarray(img, dtype=dtype or "float32")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"img must be an image (H, W) or (H, W, C), got shape {x.shape}")
    return x


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """A PIL image of an (H, W, C) array with C in (1, 3, 4); `scale` maps the array's range to
    0..255 first (Keras: subtract the minimum, divide by the maximum)."""
    Image = require_pillow("array_to_img")
    _check_format(data_format)
    x = np.asarray(x, dtype=dtype or "float32")
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4):
        raise ValueError(f"x must be an image of shape (H, W, C) with C = 1, 3 or 4, got shape {x.shape}")
    if scale:
        x = x - np.min(x)
        top = np.max(x)
        if top != 0:
            x = x / top
        x = x * 255
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[x.shape[2]]
    if mode == "L" and np.max(x) > 255:  # 32-bit integer grayscale, as Keras does
        return Image.fromarray(x[:, :, 0].astype(np.int32), "I")
    arr = x.astype(np.uint8)
    return Image.fromarray(arr[:, :, 0] if mode == "L" else arr, mode)


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Write the (H, W, C) array `x` as an image file, atomically (the old file, if any, stays
    intact until the new one is complete). `file_format` defaults to the file's extension."""
    img = array_to_img(x, data_format=data_format, scale=scale)
    Image = require_pillow("save_img")
    fmt = file_format
    if fmt is None:
        ext = os.path.splitext(os.fspath(path))[1].lower()
        fmt = Image.registered_extensions().get(ext)
        if fmt is None:
            raise ValueError(f"cannot tell the image format of {os.fspath(path)!r} from its extension; "
                             f"pass file_format= (e.g. 'png')")
    if img.mode == "RGBA" and fmt.upper() in ("JPEG", "JPG"):
        img = img.convert("RGB")  # JPEG has no alpha channel (Keras warns and drops it too)
    with atomic_write(path) as f:
        img.save(f, format=fmt, **kwargs)


def _check_format(data_format):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"data_format must be 'channels_last' (fastconv is NHWC), got {data_format!r}")
