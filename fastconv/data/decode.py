"""Image files to uint8 arrays, and resizing: what ``image_dataset_from_directory`` runs on its
thread pool (every call here releases the GIL in its heavy part).

Decoding: JPEG with simplejpeg (libjpeg-turbo) when it is installed, else Pillow; PNG, BMP,
GIF (first frame, as tf's ``expand_animations=False``) and any JPEG simplejpeg refuses (CMYK,
say) with Pillow. simplejpeg runs with TensorFlow's default DCT (fast integer), so JPEG pixels
equal Keras's; Pillow's accurate DCT differs by up to 4 levels. Chosen by measurement on a
320x240 JPEG, one thread (2-core machine shared with other work; medians of 5 x 100):
simplejpeg decode 0.38 ms, Pillow decode 0.56 ms; with the 224x224 bilinear resize, simplejpeg
0.99 ms and Pillow 1.19 ms per image. Pillow's draft mode cannot help there (it only scales
by powers of two down to at least the requested size, and 320x240 -> 224x224 is less than a
factor 2): 1.66 ms.

Resizing: :func:`resize` is the one call site of the resize kernel: the compiled uint8 batch
kernels (fastconv.data.kernels, Cython, GIL released; bilinear/nearest/area exactly as
``tf.image.resize`` with half-pixel centres and no antialiasing) where the build has them, else
Pillow's ``Image.resize`` (releases the GIL too). Difference to Keras with Pillow: it
antialiases when it shrinks an image (its filter widens with the scale), and its fixed-point
filter rounds to uint8 (within 1 level); enlarging, bilinear matches tf within that rounding.
Nearest without the kernels is done here with tf's own arithmetic (exact).
"""
import numpy as np

CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")
SUPPORTED_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3")

_simplejpeg = False  # not looked up yet: imported on the first decode (import fastconv stays light)


def _jpeg_module():
    global _simplejpeg
    if _simplejpeg is False:
        try:
            import simplejpeg
        except ImportError:  # optional: Pillow decodes JPEG too
            simplejpeg = None
        _simplejpeg = simplejpeg
    return _simplejpeg


class ImageDecodeError(ValueError):
    """A file that is not a readable image (corrupt, truncated, not an image at all)."""


def require_pillow(what="image_dataset_from_directory"):
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{what} needs Pillow to decode images: pip install Pillow "
                          "(or pip install 'fastconv[viz]')") from None
    return Image


def _pil_to_array(im, channels):
    Image = require_pillow()
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)  # an animated GIF: its first frame, as tf does with expand_animations=False
    mode = _PIL_MODES[channels]
    if im.mode != mode:
        if channels == 1 and im.mode in ("I;16", "I"):
            im = Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8))
        else:
            im = im.convert(mode)
    a = np.asarray(im, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def decode_image(data, channels=3):
    """uint8 (H, W, channels) from the bytes of a JPEG/PNG/BMP/GIF file; ImageDecodeError
    when they are not a readable image."""
    if channels not in _PIL_MODES:
        raise ValueError(f"channels must be 1, 3 or 4, got {channels!r}")
    simplejpeg = _jpeg_module() if data[:2] == b"\xff\xd8" and channels != 4 else None
    if simplejpeg is not None:
        try:
            # fastdct: TensorFlow's decode_jpeg default (INTEGER_FAST), so the pixels match
            # Keras's exactly (the accurate DCT differs by up to 4 levels)
            a = simplejpeg.decode_jpeg(data, colorspace="GRAY" if channels == 1 else "RGB", fastdct=True)
            return a if a.ndim == 3 else a[..., None]
        except ValueError:
            pass  # a JPEG simplejpeg cannot handle (or a corrupt one): Pillow decides
    Image = require_pillow()
    import io
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return _pil_to_array(im, channels)
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("not an image file Pillow can identify (corrupt, or not JPEG/PNG/BMP/GIF)") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(str(e) or type(e).__name__) from None


def read_image(path, channels=3):
    """decode_image of the file at `path`; ImageDecodeError naming the file when unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return decode_image(data, channels)
    except (OSError, ImageDecodeError) as e:
        raise ImageDecodeError(f"cannot read image {path!r}: {e}") from None


def _pil_resample(interpolation):
    Image = require_pillow()
    table = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC,
             "area": Image.BOX, "lanczos3": Image.LANCZOS}
    if interpolation not in table:
        if interpolation in INTERPOLATIONS:
            raise NotImplementedError(f"interpolation={interpolation!r} is not supported yet; use one of "
                                      f"{SUPPORTED_INTERPOLATIONS}")
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    return table[interpolation]


def _batch_kernels():
    """The compiled uint8 batch kernels (fastconv.data.kernels over the Cython extension, which
    follow tf.image.resize exactly) when this build has them; None otherwise (Pillow then)."""
    try:
        from . import kernels
    except ImportError:
        return None
    ok = callable(getattr(kernels, "compiled_available", None)) and kernels.compiled_available() \
        and hasattr(kernels, "RESIZE_METHODS") and callable(getattr(kernels, "resize", None))
    return kernels if ok else None


def resize(image, size, interpolation="bilinear", out=None):
    """uint8 (H, W, C) resized to size=(height, width): uint8 from Pillow, float32 from the
    compiled kernels. THE resize call site of the pipeline. `out` (float32, the result's shape):
    where the compiled kernels may write the result directly (returned then); other paths
    return their own array."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    kernels = _batch_kernels()
    if kernels is not None and interpolation in kernels.RESIZE_METHODS:
        if out is not None and interpolation != "nearest":
            return kernels.resize(image[None], (h, w), interpolation, out=out[None])[0]
        return kernels.resize(image[None], (h, w), interpolation)[0]  # float32 (uint8 for nearest)
    if interpolation == "nearest":
        return _nearest(image, h, w)
    Image = require_pillow()
    resample = _pil_resample(interpolation)
    if image.shape[2] == 4:
        # per band: Pillow resizes RGBA with premultiplied alpha, tf resizes every channel alike
        bands = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize((w, h), resample))
                 for c in range(4)]
        return np.stack(bands, axis=-1)
    im = Image.fromarray(image[..., 0] if image.shape[2] == 1 else np.ascontiguousarray(image))
    out = np.asarray(im.resize((w, h), resample))
    return out[..., None] if out.ndim == 2 else out


def _nearest(image, h, w):
    """tf.image.resize's nearest neighbour (half-pixel centres, float32 arithmetic, floor),
    exactly: Pillow's NEAREST picks other pixels where (i + 0.5) * scale is near an integer."""
    def taps(n_out, n_in):
        scale = np.float32(n_in) / np.float32(n_out)
        idx = np.floor((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64)
        return np.minimum(idx, n_in - 1)
    return image[taps(h, image.shape[0])[:, None], taps(w, image.shape[1])[None, :]]


def crop_to_aspect_ratio(image, size):
    """The largest centred window of `image` with the aspect ratio of size=(height, width)
    (Keras's smart_resize crop; the same rule as the Resizing layer's)."""
    from ..layers._preprocessing import aspect_crop
    top, left, h, w = aspect_crop(image.shape[0], image.shape[1], *size)
    return image[top:top + h, left:left + w]


def resize_with_pad(image, size, interpolation="bilinear"):
    """Resize keeping the aspect ratio to fit in size=(height, width), centred on zeros
    (tf.image.resize_with_pad's arithmetic)."""
    height, width = image.shape[:2]
    th, tw = size
    ratio = max(width / tw, height / th)
    rh, rw = int(height / ratio), int(width / ratio)
    top, left = max(0, int((th - height / ratio) // 2)), max(0, int((tw - width / ratio) // 2))
    resized = resize(image, (max(rh, 1), max(rw, 1)), interpolation)
    out = np.zeros((th, tw, image.shape[2]), resized.dtype)
    out[top:top + rh, left:left + rw] = resized[:th - top, :tw - left]
    return out


def load_image(path, image_size, channels=3, interpolation="bilinear", crop_to_aspect=False,
               pad_to_aspect=False, out=None):
    """(height, width, channels) of the image file at `path`, uint8 or float32 (see resize)
    (Keras's per-image steps). `out`: passed to resize (it may or may not be the result)."""
    image = read_image(path, channels)
    if crop_to_aspect:
        image = crop_to_aspect_ratio(image, image_size)
    elif pad_to_aspect:
        return resize_with_pad(image, image_size, interpolation)
    return resize(image, image_size, interpolation, out=out)
