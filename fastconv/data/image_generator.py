"""Keras's ``ImageDataGenerator`` (``fastconv.preprocessing.image.ImageDataGenerator``): real-time
augmentation of NHWC image batches from arrays (``flow``) or class folders
(``flow_from_directory``), with Keras's arguments and semantics.

The geometric part (rotation, shifts, shear, zoom) is one affine warp per image through
:func:`fastconv.data.kernels.warp_affine` (bilinear, Keras's fill modes, the batch at once in the
compiled kernel when built), on the matrix Keras builds (:mod:`fastconv.data.affine`); then
channel shift, flips and brightness (Pillow's ImageEnhance rule: the image is quantised to
uint8, each value multiplied and truncated), then :meth:`ImageDataGenerator.standardize`.
Keras quirks kept on purpose, so ported code behaves the same: the `height_shift_range` draw is
scaled by the image height but moves the picture horizontally (and width/vertically), as in
Keras; ``fill_mode="wrap"`` is scipy's (period H-1, W-1).

Randomness: Keras draws from NumPy's global generator; here each iterator owns its draws: batch
`i` of epoch `e` uses ``np.random.default_rng([seed, e, i])``, so a seeded iterator gives the
same batches whatever order they are asked in (and a run with ``fastconv.set_seed`` repeats).
Same distributions as Keras, not the same numbers. Iterating an iterator with ``for`` gives one
epoch; ``next(it)`` walks on endlessly, as in Keras. Only ``data_format="channels_last"`` and
bilinear warps (``interpolation_order=1``) are supported.
"""
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import random as _random
from . import kernels
from .affine import keras_transform_matrix
from .image_utils import PIL_INTERPOLATION, img_to_array, load_img, save_img

WHITE_LIST_FORMATS = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")
CLASS_MODES = ("categorical", "binary", "sparse", "input", None)
_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


def _number(name, v, allow_negative=False):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if not allow_negative and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    return v


def _shift_range(name, v):
    if isinstance(v, (list, tuple, np.ndarray)):
        a = np.asarray(v, float)
        if a.ndim != 1 or not np.isfinite(a).all():
            raise ValueError(f"{name} must be a number or a 1-D list of numbers, got {v!r}")
        return a
    return _number(name, v)


def _draw_shift(rng, r, size):
    """Keras's shift draw: a float range is uniform in [-r, r]; an int r is a whole number of
    pixels in (-r, r); a list is one of its values with a random sign. Fractions (max < 1) are
    of the image size."""
    if isinstance(r, np.ndarray):
        t = float(rng.choice(r)) * float(rng.choice([-1, 1]))
    elif isinstance(r, (int, np.integer)):
        t = float(rng.integers(0, r)) * float(rng.choice([-1, 1]))
    else:
        t = float(rng.uniform(-r, r))
    if np.max(r) < 1:
        t *= size
    return t


def apply_brightness_shift(x, brightness, scale=True):
    """Keras's apply_brightness_shift with Pillow's ImageEnhance.Brightness done in NumPy: the
    image is mapped to uint8 (rescaled to 0..255 first when `scale` or when it leaves that
    range), each value becomes ``trunc(float32(brightness) * v)`` clipped to 0..255, and the
    result goes back to the original range unless `scale`."""
    x = np.asarray(x, np.float32)
    x_min, x_max = float(np.min(x)), float(np.max(x))
    local_scale = x_min < 0 or x_max > 255
    if local_scale or scale:
        y = x - x_min
        top = np.max(y)
        if top != 0:
            y = y / top
        y = y * 255
    else:
        y = x
    v = y.astype(np.uint8).astype(np.float32)
    out = np.clip(np.trunc(np.float32(brightness) * v), 0, 255).astype(np.float32)
    if not scale and local_scale:
        out = out / 255 * (x_max - x_min) + x_min
    return out


def apply_channel_shift(x, intensity):
    """Add `intensity` to every channel, clipped to the image's own [min, max] (Keras)."""
    x = np.asarray(x, np.float32)
    return np.clip(x + np.float32(intensity), np.min(x), np.max(x))


class ImageDataGenerator:
    """Batches of augmented and standardised images (Keras's ImageDataGenerator arguments)."""

    def __init__(self, featurewise_center=False, samplewise_center=False, featurewise_std_normalization=False,
                 samplewise_std_normalization=False, zca_whitening=False, zca_epsilon=1e-6, rotation_range=0,
                 width_shift_range=0.0, height_shift_range=0.0, brightness_range=None, shear_range=0.0,
                 zoom_range=0.0, channel_shift_range=0.0, fill_mode="nearest", cval=0.0, horizontal_flip=False,
                 vertical_flip=False, rescale=None, preprocessing_function=None, data_format=None,
                 validation_split=0.0, interpolation_order=1, dtype=None):
        if data_format not in (None, "channels_last"):
            raise ValueError(f"data_format must be 'channels_last' (fastconv is NHWC), got {data_format!r}")
        if interpolation_order != 1:
            raise ValueError(f"interpolation_order must be 1 (bilinear warps), got {interpolation_order!r}")
        if fill_mode not in kernels.FILL_MODES:
            raise ValueError(f"fill_mode must be one of {kernels.FILL_MODES}, got {fill_mode!r}")
        if validation_split and not 0 < validation_split < 1:
            raise ValueError(f"validation_split must be strictly between 0 and 1, got {validation_split!r}")
        if isinstance(zoom_range, (int, float, np.integer, np.floating)) and not isinstance(zoom_range, bool):
            _number("zoom_range", zoom_range)
            self.zoom_range = [1 - zoom_range, 1 + zoom_range]
        elif (isinstance(zoom_range, (list, tuple)) and len(zoom_range) == 2
              and all(isinstance(v, (int, float, np.integer, np.floating)) for v in zoom_range)):
            self.zoom_range = [float(zoom_range[0]), float(zoom_range[1])]
        else:
            raise ValueError(f"zoom_range must be a float or a pair of floats, got {zoom_range!r}")
        if brightness_range is not None:
            if not isinstance(brightness_range, (tuple, list)) or len(brightness_range) != 2:
                raise ValueError(f"brightness_range must be a pair of floats (low, high), got {brightness_range!r}")
            for v in brightness_range:
                _number("brightness_range", v)
        if rescale is not None and rescale is not False:
            _number("rescale", rescale, allow_negative=True)
        if preprocessing_function is not None and not callable(preprocessing_function):
            raise TypeError(f"preprocessing_function must be callable, got {type(preprocessing_function).__name__}")
        self.rotation_range = _number("rotation_range", rotation_range)
        self.width_shift_range = _shift_range("width_shift_range", width_shift_range)
        self.height_shift_range = _shift_range("height_shift_range", height_shift_range)
        self.shear_range = _number("shear_range", shear_range)
        self.channel_shift_range = _number("channel_shift_range", channel_shift_range)
        self.cval = _number("cval", cval, allow_negative=True)
        self.featurewise_center, self.samplewise_center = featurewise_center, samplewise_center
        self.featurewise_std_normalization = featurewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        self.zca_whitening, self.zca_epsilon = zca_whitening, zca_epsilon
        self.brightness_range, self.fill_mode = brightness_range, fill_mode
        self.horizontal_flip, self.vertical_flip = horizontal_flip, vertical_flip
        self.rescale, self.preprocessing_function = rescale, preprocessing_function
        self.dtype = np.dtype(dtype or "float32")
        self.data_format = "channels_last"
        self.interpolation_order = 1
        self._validation_split = validation_split
        self.mean = self.std = self.zca_whitening_matrix = None
        # Keras's implied settings, with its warnings
        if zca_whitening:
            if not featurewise_center:
                self.featurewise_center = True
                warnings.warn("zca_whitening overrides featurewise_center (set to True)", stacklevel=2)
            if featurewise_std_normalization:
                self.featurewise_std_normalization = False
                warnings.warn("zca_whitening overrides featurewise_std_normalization (set to False)", stacklevel=2)
        if self.featurewise_std_normalization and not self.featurewise_center:
            self.featurewise_center = True
            warnings.warn("featurewise_std_normalization overrides featurewise_center (set to True)", stacklevel=2)
        if samplewise_std_normalization and not samplewise_center:
            self.samplewise_center = True
            warnings.warn("samplewise_std_normalization overrides samplewise_center (set to True)", stacklevel=2)

    # -- iterators --------------------------------------------------------------------------
    def flow(self, x, y=None, batch_size=32, shuffle=True, sample_weight=None, seed=None, save_to_dir=None,
             save_prefix="", save_format="png", ignore_class_split=False, subset=None):
        """An iterator of ``(x, y[, sample_weight])`` batches (``x`` alone when y is None)."""
        return NumpyArrayIterator(x, y, self, batch_size=batch_size, shuffle=shuffle, sample_weight=sample_weight,
                                  seed=seed, save_to_dir=save_to_dir, save_prefix=save_prefix,
                                  save_format=save_format, ignore_class_split=ignore_class_split, subset=subset)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb", classes=None,
                            class_mode="categorical", batch_size=32, shuffle=True, seed=None, save_to_dir=None,
                            save_prefix="", save_format="png", follow_links=False, subset=None,
                            interpolation="nearest", keep_aspect_ratio=False):
        """An iterator over the images of `directory`, one sub-folder per class (Keras)."""
        return DirectoryIterator(directory, self, target_size=target_size, color_mode=color_mode, classes=classes,
                                 class_mode=class_mode, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                 save_to_dir=save_to_dir, save_prefix=save_prefix, save_format=save_format,
                                 follow_links=follow_links, subset=subset, interpolation=interpolation,
                                 keep_aspect_ratio=keep_aspect_ratio)

    def flow_from_dataframe(self, *args, **kwargs):
        raise NotImplementedError("flow_from_dataframe is not provided (fastconv does not depend on pandas): "
                                  "put the images in class sub-folders and use flow_from_directory, or load "
                                  "them with load_img and use flow")

    # -- the transform ----------------------------------------------------------------------
    def get_random_transform(self, img_shape, seed=None):
        """A dict of transform parameters drawn as Keras draws them (theta, tx, ty, shear, zx, zy,
        flip_horizontal, flip_vertical, channel_shift_intensity, brightness)."""
        rng = np.random.default_rng(seed) if seed is not None else _random.generator("augment")
        return self._draw(img_shape, rng)

    def _draw(self, img_shape, rng):
        if len(img_shape) != 3:
            raise ValueError(f"img_shape must be (H, W, C), got {tuple(img_shape)}")
        theta = float(rng.uniform(-self.rotation_range, self.rotation_range)) if self.rotation_range else 0
        tx = _draw_shift(rng, self.height_shift_range, img_shape[0]) if np.any(self.height_shift_range) else 0
        ty = _draw_shift(rng, self.width_shift_range, img_shape[1]) if np.any(self.width_shift_range) else 0
        shear = float(rng.uniform(-self.shear_range, self.shear_range)) if self.shear_range else 0
        if self.zoom_range[0] == 1 and self.zoom_range[1] == 1:
            zx = zy = 1
        else:
            zx, zy = (float(v) for v in rng.uniform(self.zoom_range[0], self.zoom_range[1], 2))
        flip_h = bool(rng.random() < 0.5) and bool(self.horizontal_flip)
        flip_v = bool(rng.random() < 0.5) and bool(self.vertical_flip)
        shift = (float(rng.uniform(-self.channel_shift_range, self.channel_shift_range))
                 if self.channel_shift_range != 0 else None)
        bright = (float(rng.uniform(self.brightness_range[0], self.brightness_range[1]))
                  if self.brightness_range is not None else None)
        return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
                "flip_horizontal": flip_h, "flip_vertical": flip_v,
                "channel_shift_intensity": shift, "brightness": bright}

    def apply_transform(self, x, transform_parameters):
        """Apply the parameters (as get_random_transform returns) to one (H, W, C) image."""
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"x must be one image (H, W, C), got shape {x.shape}")
        return self._transform_batch(x[None], [transform_parameters])[0]

    def _transform_batch(self, xb, params):
        xb = np.asarray(xb, np.float32)
        n, h, w, _ = xb.shape
        out = xb.copy()
        geo = [i for i, p in enumerate(params)
               if p.get("theta", 0) or p.get("tx", 0) or p.get("ty", 0) or p.get("shear", 0)
               or p.get("zx", 1) != 1 or p.get("zy", 1) != 1]
        if geo:  # one warp call for all the images that move (the compiled kernel runs them in parallel)
            mats = np.stack([keras_transform_matrix(params[i].get("theta", 0), params[i].get("tx", 0),
                                                    params[i].get("ty", 0), params[i].get("shear", 0),
                                                    params[i].get("zx", 1), params[i].get("zy", 1), h, w)
                             for i in geo])
            out[geo] = kernels.warp_affine(xb[geo], mats, fill_mode=self.fill_mode, cval=self.cval)
        for i, p in enumerate(params):
            if p.get("channel_shift_intensity") is not None:
                out[i] = apply_channel_shift(out[i], p["channel_shift_intensity"])
            if p.get("flip_horizontal", False):
                out[i] = out[i, :, ::-1]
            if p.get("flip_vertical", False):
                out[i] = out[i, ::-1]
            if p.get("brightness") is not None:
                out[i] = apply_brightness_shift(out[i], p["brightness"], False)
        return out

    def random_transform(self, x, seed=None):
        """A randomly transformed copy of one (H, W, C) image."""
        x = np.asarray(x)
        return self.apply_transform(x, self.get_random_transform(x.shape, seed))

    def standardize(self, x):
        """preprocessing_function, rescale, samplewise then featurewise normalisation and ZCA, in
        Keras's order, in place on a float array (as Keras; pass a copy to keep yours)."""
        if self.preprocessing_function:
            x = self.preprocessing_function(x)
        if self.rescale:
            x *= self.rescale
        if self.samplewise_center:
            x -= np.mean(x, keepdims=True)
        if self.samplewise_std_normalization:
            x /= np.std(x, keepdims=True) + 1e-6
        if self.featurewise_center:
            if self.mean is not None:
                x -= self.mean
            else:
                warnings.warn("featurewise_center is set but the generator was not fit: call .fit(x) first",
                              stacklevel=2)
        if self.featurewise_std_normalization:
            if self.std is not None:
                x /= self.std + 1e-6
            else:
                warnings.warn("featurewise_std_normalization is set but the generator was not fit: "
                              "call .fit(x) first", stacklevel=2)
        if self.zca_whitening:
            if self.zca_whitening_matrix is not None:
                flat = x.reshape(-1, math.prod(x.shape[-3:]))
                x = np.reshape(flat @ self.zca_whitening_matrix, x.shape)
            else:
                warnings.warn("zca_whitening is set but the generator was not fit: call .fit(x) first",
                              stacklevel=2)
        return x

    def fit(self, x, augment=False, rounds=1, seed=None):
        """Compute the featurewise mean/std (per channel) and the ZCA matrix from sample data
        (after rescale; over `rounds` augmented copies when `augment`)."""
        x = np.array(x, dtype=self.dtype)  # a copy: rescale works in place
        if x.ndim != 4:
            raise ValueError(f"fit needs a rank-4 NHWC array (N, H, W, C), got shape {x.shape}")
        if x.shape[3] not in (1, 3, 4):
            warnings.warn(f"fit expects images with 1, 3 or 4 channels on the last axis, got shape {x.shape}",
                          stacklevel=2)
        if self.rescale:
            x *= self.rescale
        if augment:
            rng = np.random.default_rng(seed) if seed is not None else _random.generator("augment")
            x = np.concatenate([self._transform_batch(x, [self._draw(x.shape[1:], rng) for _ in range(len(x))])
                                for _ in range(rounds)]).astype(self.dtype)
        if self.featurewise_center:
            self.mean = np.mean(x, axis=(0, 1, 2)).reshape(1, 1, -1)
            x -= self.mean
        if self.featurewise_std_normalization:
            self.std = np.std(x, axis=(0, 1, 2)).reshape(1, 1, -1)
            x /= self.std + 1e-6
        if self.zca_whitening:
            flat = x.reshape(len(x), -1)
            u, s, _ = np.linalg.svd(flat.T, full_matrices=False)
            s_inv = np.sqrt(len(x)) / (s + self.zca_epsilon)
            self.zca_whitening_matrix = (u * s_inv) @ u.T


class Iterator:
    """Keras Sequence-like batch iterator: len, [i], on_epoch_end; ``for`` gives one epoch,
    ``next()`` walks on without end (Keras)."""

    def __init__(self, n, batch_size, shuffle, seed):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if n < 1:
            raise ValueError("there are no samples to iterate over (n = 0)")
        self.n, self.batch_size, self.shuffle = n, int(batch_size), bool(shuffle)
        # one base seed per iterator; batch draws are keyed by (seed, epoch, batch index)
        self.seed = int(seed) if seed is not None else int(_random.generator("augment").integers(2 ** 62))
        self.epoch = 0
        self.batch_index = 0
        self._set_index_array()

    def _set_index_array(self):
        self.index_array = np.arange(self.n)
        if self.shuffle:
            self.index_array = np.random.default_rng([self.seed, self.epoch, 2 ** 31]).permutation(self.n)

    def __len__(self):
        return (self.n + self.batch_size - 1) // self.batch_size

    def __getitem__(self, idx):
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"batch index must be an int, got {type(idx).__name__}")
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"batch index {idx} out of range for a sequence of length {len(self)}")
        sel = self.index_array[self.batch_size * idx: self.batch_size * (idx + 1)]
        return self._batch(sel, np.random.default_rng([self.seed, self.epoch, int(idx)]))

    def on_epoch_end(self):
        self.epoch += 1
        self._set_index_array()

    def reset(self):
        self.batch_index = 0

    def __iter__(self):
        def one_epoch():
            for i in range(len(self)):
                yield self[i]
            self.on_epoch_end()
        return one_epoch()

    def __next__(self):
        if self.batch_index >= len(self):
            self.batch_index = 0
            self.on_epoch_end()
        self.batch_index += 1
        return self[self.batch_index - 1]

    next = __next__

    def _augment(self, xb, rng, first_index):
        gen = self.image_data_generator
        if gen is not None:
            xb = gen._transform_batch(xb, [gen._draw(xb.shape[1:], rng) for _ in range(len(xb))])
            xb = np.stack([gen.standardize(img) for img in xb.astype(gen.dtype)]).astype(gen.dtype, copy=False)
        if self.save_to_dir:
            for i, img in enumerate(xb):
                name = f"{self.save_prefix}_{first_index + i}_{int(rng.integers(10 ** 7))}.{self.save_format}"
                save_img(os.path.join(self.save_to_dir, name), img, scale=True)
        return xb


def _subset_check(subset):
    if subset not in (None, "training", "validation"):
        raise ValueError(f"subset must be 'training', 'validation' or None, got {subset!r}")


class NumpyArrayIterator(Iterator):
    """Batches of augmented images from arrays (returned by ImageDataGenerator.flow)."""

    def __init__(self, x, y, image_data_generator, batch_size=32, shuffle=False, sample_weight=None, seed=None,
                 save_to_dir=None, save_prefix="", save_format="png", ignore_class_split=False, subset=None):
        _subset_check(subset)
        if isinstance(x, (tuple, list)):
            raise TypeError("x must be one NHWC array (extra input arrays in a tuple are not supported)")
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"x must be a rank-4 NHWC array (N, H, W, C), got shape {x.shape}")
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)
            if len(sample_weight) != len(x):
                raise ValueError(f"x and sample_weight must have the same length, got {len(x)} and "
                                 f"{len(sample_weight)}")
        if subset is not None:
            split = int(len(x) * image_data_generator._validation_split)
            if not image_data_generator._validation_split:
                raise ValueError("subset needs an ImageDataGenerator with validation_split > 0")
            if (y is not None and not ignore_class_split
                    and not np.array_equal(np.unique(y[:split]), np.unique(y[split:]))):
                raise ValueError("the training and validation subsets hold different classes after the split "
                                 "(Keras takes the first validation_split of the samples for validation): "
                                 "shuffle the arrays first, or pass ignore_class_split=True")
            sl = slice(None, split) if subset == "validation" else slice(split, None)
            x = x[sl]
            y = None if y is None else y[sl]
            sample_weight = None if sample_weight is None else sample_weight[sl]
        if x.shape[3] not in (1, 3, 4):
            warnings.warn(f"NumpyArrayIterator expects images with 1, 3 or 4 channels, got shape {x.shape}",
                          stacklevel=3)
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.image_data_generator = image_data_generator
        self.save_to_dir, self.save_prefix, self.save_format = save_to_dir, save_prefix, save_format
        super().__init__(len(x), batch_size, shuffle, seed)

    def _batch(self, sel, rng):
        dtype = self.image_data_generator.dtype if self.image_data_generator else np.float32
        xb = self._augment(self.x[sel].astype(dtype), rng, int(sel[0]))
        if self.y is None:
            return xb
        if self.sample_weight is None:
            return xb, self.y[sel]
        return xb, self.y[sel], self.sample_weight[sel]


def _list_images(folder, follow_links):
    out = []
    for root, dirs, files in os.walk(folder, followlinks=follow_links):
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files) if f.lower().rsplit(".", 1)[-1] in WHITE_LIST_FORMATS
                and "." in f]
    return sorted(out)


_POOL = None
_POOL_LOCK = threading.Lock()


def _decoder_pool():
    """One shared pool of image-decoding threads (created on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="fastconv-decode")
        return _POOL


class DirectoryIterator(Iterator):
    """Batches of augmented images read from class sub-folders (flow_from_directory)."""

    def __init__(self, directory, image_data_generator, target_size=(256, 256), color_mode="rgb", classes=None,
                 class_mode="categorical", batch_size=32, shuffle=True, seed=None, data_format=None,
                 save_to_dir=None, save_prefix="", save_format="png", follow_links=False, subset=None,
                 interpolation="nearest", keep_aspect_ratio=False, dtype=None):
        _subset_check(subset)
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"directory {directory!r} does not exist or is not a directory")
        if color_mode not in _CHANNELS:
            raise ValueError(f"color_mode must be one of {tuple(_CHANNELS)}, got {color_mode!r}")
        if class_mode not in CLASS_MODES:
            raise ValueError(f"class_mode must be one of {CLASS_MODES}, got {class_mode!r}")
        if interpolation not in PIL_INTERPOLATION:
            raise ValueError(f"interpolation must be one of {PIL_INTERPOLATION}, got {interpolation!r}")
        self.target_size = kernels._size(target_size, "target_size")
        self.image_shape = self.target_size + (_CHANNELS[color_mode],)
        self.directory, self.color_mode, self.class_mode = directory, color_mode, class_mode
        self.interpolation, self.keep_aspect_ratio = interpolation, keep_aspect_ratio
        self.image_data_generator = image_data_generator
        self.dtype = np.dtype(dtype or (image_data_generator.dtype if image_data_generator else "float32"))
        self.save_to_dir, self.save_prefix, self.save_format = save_to_dir, save_prefix, save_format
        if classes is None:
            classes = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
        else:
            missing = [c for c in classes if not os.path.isdir(os.path.join(directory, c))]
            if missing:
                raise ValueError(f"classes {missing} are not sub-folders of {directory!r}")
        self.class_indices = {c: i for i, c in enumerate(classes)}
        split = image_data_generator._validation_split if image_data_generator else 0
        if subset is not None and not split:
            raise ValueError("subset needs an ImageDataGenerator with validation_split > 0")
        lo, hi = (0.0, 1.0) if subset is None else ((0.0, split) if subset == "validation" else (split, 1.0))
        paths, labels = [], []
        for c in classes:  # Keras splits each class on its own: its first files go to validation
            found = _list_images(os.path.join(directory, c), follow_links)
            found = found[int(lo * len(found)):int(hi * len(found))]
            paths += found
            labels += [self.class_indices[c]] * len(found)
        self.filepaths = paths
        self.filenames = [os.path.relpath(p, directory) for p in paths]
        self.classes = np.asarray(labels, np.int32)
        self.num_classes = len(classes)
        print(f"Found {len(paths)} images belonging to {self.num_classes} classes.")
        if not paths:
            raise ValueError(f"no images ({', '.join(WHITE_LIST_FORMATS)}) found under {directory!r} "
                             f"in the sub-folders {list(classes)}")
        super().__init__(len(paths), batch_size, shuffle, seed)

    @property
    def labels(self):
        return self.classes

    def _load(self, path):
        try:
            img = load_img(path, color_mode=self.color_mode, target_size=self.target_size,
                           interpolation=self.interpolation, keep_aspect_ratio=self.keep_aspect_ratio)
            try:
                return img_to_array(img, dtype=self.dtype)
            finally:
                img.close()
        except OSError as e:
            raise OSError(f"cannot read image {path!r}: {e}") from None

    def _batch(self, sel, rng):
        # Pillow releases the GIL while decoding and resizing: a batch's files load in parallel
        xb = np.stack(list(_decoder_pool().map(self._load, [self.filepaths[j] for j in sel])))
        xb = self._augment(xb, rng, int(sel[0]))
        if self.class_mode == "input":
            return xb, xb.copy()
        if self.class_mode in ("binary", "sparse"):
            return xb, self.classes[sel].astype(self.dtype)
        if self.class_mode == "categorical":
            y = np.zeros((len(sel), self.num_classes), self.dtype)
            y[np.arange(len(sel)), self.classes[sel]] = 1
            return xb, y
        return xb


__all__ = ["ImageDataGenerator", "Iterator", "NumpyArrayIterator", "DirectoryIterator",
           "apply_brightness_shift", "apply_channel_shift"]
