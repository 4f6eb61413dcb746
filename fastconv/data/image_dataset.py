"""``image_dataset_from_directory``: labelled image batches from one sub-folder per class.

Follows Keras: classes are the sub-folder names in alphanumeric order (or `class_names`),
images are decoded with Pillow, resized bilinearly to `image_size` and yielded as float32
``(batch, height, width, channels)`` arrays holding 0..255 values, labels as int32 class indices
(``label_mode="int"``), one-hot float32 (``"categorical"``) or float32 (N, 1) (``"binary"``).
The file list is shuffled with `seed` before the validation split, so the training and
validation subsets made with the same seed never overlap.
"""
import os

import numpy as np

from .. import random as _random
from .loader import _Prefetcher

ALLOWED_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}


def _require_pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("image_dataset_from_directory needs Pillow to decode images: "
                          "pip install Pillow (or pip install 'fastconv[viz]')") from None
    return Image


def index_directory(directory, labels="inferred", class_names=None):
    """(file_paths, int labels or None, class_names) for the images under `directory`."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory {directory!r} does not exist or is not a directory")
    if labels == "inferred":
        subdirs = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
        if class_names is not None:
            if sorted(class_names) != sorted(set(class_names)) or not set(class_names) <= set(subdirs):
                raise ValueError(f"class_names {list(class_names)} must be distinct sub-folders of "
                                 f"{directory!r}, which has {subdirs}")
            subdirs = list(class_names)
        paths, targets = [], []
        for i, name in enumerate(subdirs):
            found = _images_under(os.path.join(directory, name))
            paths += found
            targets += [i] * len(found)
        return paths, np.asarray(targets, np.int64), list(subdirs)
    paths = _images_under(directory)
    if labels is None:
        return paths, None, None
    targets = np.asarray(labels)
    if targets.ndim != 1 or len(targets) != len(paths):
        raise ValueError(f"labels must be 'inferred', None or a list with one label per image; "
                         f"got {targets.shape} labels for {len(paths)} images (sorted by path)")
    return paths, targets.astype(np.int64), class_names


def _images_under(folder):
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()  # os.walk order is filesystem-dependent; sort for reproducible indexing
        out += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(ALLOWED_FORMATS)]
    return out


class ImageDirectoryDataset:
    """Batch iterable returned by :func:`image_dataset_from_directory` (re-iterable per epoch)."""

    def __init__(self, file_paths, labels, class_names, image_size, batch_size, color_mode,
                 label_mode, num_classes, shuffle, seed, interpolation="bilinear", prefetch=False):
        self.file_paths = list(file_paths)
        self.labels = labels
        self.class_names = class_names
        self.image_size = tuple(image_size)
        self.batch_size = batch_size
        self.color_mode = color_mode
        self.label_mode = label_mode
        self.num_classes = num_classes
        self.shuffle = shuffle
        self.interpolation = interpolation
        self.prefetch = prefetch
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def __len__(self):
        if self.batch_size is None:
            return len(self.file_paths)
        return -(-len(self.file_paths) // self.batch_size)

    def load_image(self, path):
        Image = _require_pillow()
        resample = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
                    "bicubic": Image.BICUBIC}[self.interpolation]
        with Image.open(path) as im:
            im = im.convert(_PIL_MODES[self.color_mode])
            h, w = self.image_size
            if im.size != (w, h):
                im = im.resize((w, h), resample)
            a = np.asarray(im, dtype=np.float32)
        return a[..., None] if a.ndim == 2 else a

    def _encode(self, idx):
        y = self.labels[idx]
        if self.label_mode == "int":
            return y.astype(np.int32)
        if self.label_mode == "binary":
            return y.astype(np.float32).reshape(-1, 1)
        return np.eye(self.num_classes, dtype=np.float32)[y]

    def _batches(self, order):
        step = self.batch_size or 1
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            xb = np.stack([self.load_image(self.file_paths[i]) for i in idx])
            if self.label_mode is None or self.labels is None:
                yield (xb[0] if self.batch_size is None else xb), None
                continue
            yb = self._encode(idx)
            yield (xb[0], yb[0]) if self.batch_size is None else (xb, yb)

    def __iter__(self):
        order = np.arange(len(self.file_paths))
        if self.shuffle:
            rng = self._rng if self._rng is not None else _random.generator("shuffle")
            order = rng.permutation(order)
        gen = self._batches(order)
        return _Prefetcher(gen) if self.prefetch else gen

    def as_arrays(self):
        """Every image and label as two arrays (x (N, H, W, C) float32, y), in file order."""
        x = np.stack([self.load_image(p) for p in self.file_paths]) if self.file_paths else \
            np.zeros((0,) + self.image_size + (_CHANNELS[self.color_mode],), np.float32)
        y = None if self.labels is None else self._encode(np.arange(len(self.file_paths)))
        return x, y


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None,
                                 color_mode="rgb", batch_size=32, image_size=(256, 256),
                                 shuffle=True, seed=None, validation_split=None, subset=None,
                                 interpolation="bilinear", prefetch=False):
    """Labelled image batches from ``directory/<class_name>/*.png|jpg|...`` (Keras semantics).

    subset: "training" or "validation" (with `validation_split`), or "both" for a pair.
    Requires Pillow (``pip install Pillow``); the ImportError says so when it is missing.
    """
    _require_pillow()
    if color_mode not in _CHANNELS:
        raise ValueError(f"color_mode must be one of {list(_CHANNELS)}, got {color_mode!r}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(f"label_mode must be 'int', 'categorical', 'binary' or None, got {label_mode!r}")
    if interpolation not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(f"interpolation must be 'bilinear', 'nearest' or 'bicubic', got {interpolation!r}")
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or not all(isinstance(s, int) and s > 0 for s in image_size)):
        raise ValueError(f"image_size must be a (height, width) pair of positive ints, got {image_size!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError(f"labels must be 'inferred', None or a list/tuple of labels, got {labels!r}")
    if validation_split is not None:
        if not 0 < validation_split < 1:
            raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
        if subset not in ("training", "validation", "both"):
            raise ValueError(f"with validation_split, subset must be 'training', 'validation' or "
                             f"'both', got {subset!r}")
        if shuffle and seed is None:
            raise ValueError("validation_split with shuffle=True needs a seed, so that the training "
                             "and validation subsets are drawn from the same shuffled order")
    elif subset is not None:
        raise ValueError(f"subset={subset!r} needs validation_split")

    paths, targets, names = index_directory(directory, labels, class_names)
    if not paths:
        raise ValueError(f"no images ({', '.join(ALLOWED_FORMATS)}) found under {os.fspath(directory)!r}")
    num_classes = len(names) if names is not None else (int(targets.max()) + 1 if targets is not None else 0)
    # Keras prints these lines; ported scripts and notebooks are read against them.
    if labels is None:
        print(f"Found {len(paths)} files.")
    else:
        print(f"Found {len(paths)} files belonging to {num_classes} classes.")
    if label_mode == "binary" and num_classes != 2:
        raise ValueError(f"label_mode='binary' needs exactly 2 classes, found {num_classes}")
    if label_mode is None:
        targets = None

    order = np.arange(len(paths))
    if shuffle:
        # the split shuffle uses its own generator from `seed`, as Keras does, so both subsets agree
        split_seed = seed if seed is not None else int(_random.generator("shuffle").integers(2**31))
        order = np.random.default_rng(split_seed).permutation(order)
    paths = [paths[i] for i in order]
    targets = None if targets is None else targets[order]

    def make(sl):
        return ImageDirectoryDataset(paths[sl], None if targets is None else targets[sl], names,
                                     image_size, batch_size, color_mode, label_mode, num_classes,
                                     shuffle, seed, interpolation, prefetch)

    if validation_split is None:
        return make(slice(None))
    n_val = int(validation_split * len(paths))
    train, val = make(slice(0, len(paths) - n_val)), make(slice(len(paths) - n_val, None))
    if subset in ("training", "both"):
        print(f"Using {len(paths) - n_val} files for training.")
    if subset in ("validation", "both"):
        print(f"Using {n_val} files for validation.")
    return {"training": train, "validation": val, "both": (train, val)}[subset]
