"""``image_dataset_from_directory``: a :class:`~fastconv.data.Dataset` of labelled image batches
from one sub-folder per class, following Keras 3 step by step:

- classes: the sub-folders (not starting with ".") in sorted order, or `class_names` (a
  subset, in the order given); files: every .bmp/.gif/.jpeg/.jpg/.png below each class folder
  (sorted walk), the classes one after the other;
- with `shuffle`, that list is shuffled with ``np.random.RandomState(seed)`` (Keras's exact
  generator, so the file order matches Keras's for the same seed) BEFORE the validation split,
  which keeps the last ``int(validation_split * N)`` files for validation; the training set is
  then shuffled again each epoch with a buffer of ``8 * batch_size`` (unseeded: drawn from
  ``fastconv.random.generator("shuffle")``, so ``fastconv.set_seed`` repeats it);
- images decoded on a thread pool (:mod:`fastconv.data.decode`), each resized to `image_size`
  straight into its row of the batch (:mod:`fastconv.data.image_batches`), yielded as float32 (batch, height, width, channels) holding 0..255; labels int32
  (``label_mode="int"``), one-hot float32 (``"categorical"``), float32 (N, 1) (``"binary"``);
- Keras's messages: "Found N files belonging to K classes." and "Using M files for training."

Unreadable or corrupt files are skipped with a warning naming each (``bad_files="raise"``
raises instead); ``len()`` still counts them, so a skipped file shortens the last batch.
An empty folder, or a class folder with no images, is a ValueError.
"""
import os
import warnings

import numpy as np

from .. import random as _random
from . import decode
from .dataset import AUTOTUNE, Dataset, resolve_parallel_calls
from .image_batches import DecodedBatches

ALLOWED_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def _walk_images(folder, follow_links):
    found = []
    for root, _, files in sorted(os.walk(folder, followlinks=follow_links), key=lambda w: w[0]):
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(ALLOWED_FORMATS)]
    return found


def index_directory(directory, labels="inferred", class_names=None, follow_links=False):
    """(file_paths, int64 labels or None, class_names) for the images under `directory`, in
    Keras's order before shuffling."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory {directory!r} does not exist or is not a directory")
    if labels != "inferred":
        if class_names is not None:
            raise ValueError("class_names can only be given with labels='inferred' (with explicit labels "
                             "the class names are the sorted labels)")
        paths = _walk_images(directory, follow_links)
        if labels is None:
            return paths, None, None
        targets = np.asarray(labels)
        if targets.ndim != 1 or len(targets) != len(paths):
            raise ValueError(f"labels must be 'inferred', None or a list with one label per image; got "
                             f"{targets.shape} labels for {len(paths)} images found in {directory!r} "
                             "(sorted by path)")
        return paths, targets.astype(np.int64), [str(v) for v in sorted(set(targets.tolist()))]
    subdirs = sorted(d for d in os.listdir(directory)
                     if os.path.isdir(os.path.join(directory, d)) and not d.startswith("."))
    if class_names is not None:
        class_names = list(class_names)
        if len(set(class_names)) != len(class_names) or not set(class_names) <= set(subdirs):
            raise ValueError(f"class_names {class_names} must be distinct sub-folders of {directory!r}, "
                             f"which has {subdirs}")
        subdirs = class_names
    paths, targets = [], []
    for i, name in enumerate(subdirs):
        found = _walk_images(os.path.join(directory, name), follow_links)
        paths += found
        targets += [i] * len(found)
    return paths, np.asarray(targets, np.int64), list(subdirs)


def _encode_labels(targets, label_mode, num_classes):
    if label_mode == "int":
        return targets.astype(np.int32)
    if label_mode == "binary":
        return targets.astype(np.float32).reshape(-1, 1)
    return np.eye(num_classes, dtype=np.float32)[targets]


class ImageDirectoryDataset(Dataset):
    """The Dataset :func:`image_dataset_from_directory` returns: the pipeline plus Keras's
    ``class_names`` and ``file_paths`` attributes, and :meth:`as_arrays`."""
    _keeps_element_shape = True

    def __init__(self, pipeline, file_paths, class_names, image_shape, load_one):
        super().__init__(pipeline)
        self.file_paths = list(file_paths)
        self.class_names = class_names
        self._image_shape = image_shape
        self._load_one = load_one

    def _iterate(self):
        return self._parent._iterate()

    def _cardinality(self):
        return self._parent._cardinality()

    def as_arrays(self):
        """Every image (N, H, W, C) float32 and label (or None), in file order; skipped files
        are left out of both."""
        xs, keep = [], []
        for i, p in enumerate(self.file_paths):
            img = self._load_one(p)
            if img is not None:
                xs.append(img)
                keep.append(i)
        x = np.stack(xs) if xs else np.zeros((0,) + self._image_shape, np.float32)
        y = None if self.labels is None else self.labels[keep]
        return x, y


def _check_args(color_mode, label_mode, interpolation, image_size, batch_size, labels, validation_split,
                subset, shuffle, seed, crop_to_aspect_ratio, pad_to_aspect_ratio, bad_files):
    if color_mode not in decode.CHANNELS:
        raise ValueError(f"color_mode must be one of {list(decode.CHANNELS)}, got {color_mode!r}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(f"label_mode must be 'int', 'categorical', 'binary' or None, got {label_mode!r}")
    if interpolation not in decode.INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {decode.INTERPOLATIONS}, got {interpolation!r}")
    if interpolation not in decode.SUPPORTED_INTERPOLATIONS:
        raise NotImplementedError(f"interpolation={interpolation!r} is not supported yet; use one of "
                                  f"{decode.SUPPORTED_INTERPOLATIONS}")
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in image_size)):
        raise ValueError(f"image_size must be a (height, width) pair of positive ints, got {image_size!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError(f"labels must be 'inferred', None or a list/tuple of labels, got {labels!r}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be True")
    if bad_files not in ("skip", "raise"):
        raise ValueError(f"bad_files must be 'skip' (warn and leave the file out) or 'raise', got {bad_files!r}")
    if validation_split is not None and validation_split != 0:
        if not 0 < validation_split < 1:
            raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
        if subset not in ("training", "validation", "both"):
            raise ValueError(f"with validation_split, subset must be 'training', 'validation' or 'both', "
                             f"got {subset!r}")
        if shuffle and seed is None:
            raise ValueError("validation_split with shuffle=True needs a seed, so that the training and "
                             "validation subsets are drawn from the same shuffled order")
    elif subset is not None:
        raise ValueError(f"subset={subset!r} needs validation_split")


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None,
                                 color_mode="rgb", batch_size=32, image_size=(256, 256), shuffle=True,
                                 seed=None, validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                                 data_format=None, verbose=True, bad_files="skip", num_parallel_calls=AUTOTUNE):
    """Labelled image batches from ``directory/<class_name>/*.png|jpg|...`` (Keras 3 arguments
    and semantics; see the module doc). subset "both" returns (training, validation).

    bad_files: "skip" (warn naming the file, leave it out) or "raise". num_parallel_calls:
    decoding threads (AUTOTUNE: one per CPU). Requires Pillow (the ImportError says so).
    """
    decode.require_pillow()
    _check_args(color_mode, label_mode, interpolation, image_size, batch_size, labels, validation_split,
                subset, shuffle, seed, crop_to_aspect_ratio, pad_to_aspect_ratio, bad_files)
    if data_format not in (None, "channels_last"):
        raise NotImplementedError(f"data_format={data_format!r}: fastconv images are channels_last (NHWC)")
    num_parallel_calls = resolve_parallel_calls(num_parallel_calls)
    directory = os.fspath(directory)
    paths, targets, names = index_directory(directory, labels, class_names, follow_links)
    if not paths:
        raise ValueError(f"no images found in directory {directory!r}; allowed formats: {ALLOWED_FORMATS}")
    if labels == "inferred":
        counts = np.bincount(targets, minlength=len(names))
        empty = [n for n, c in zip(names, counts) if c == 0]
        if empty:
            raise ValueError(f"class folder(s) {empty} under {directory!r} hold no images "
                             f"({', '.join(ALLOWED_FORMATS)}); remove them or add images")
    num_classes = len(names) if names is not None else 0
    if verbose:  # Keras prints these lines; ported scripts and notebooks are read against them
        if labels is None:
            print(f"Found {len(paths)} files.")
        else:
            print(f"Found {len(paths)} files belonging to {num_classes} classes.")
    if label_mode == "binary" and num_classes != 2:
        raise ValueError(f"label_mode='binary' needs exactly 2 classes, found {num_classes}: {names}")
    if label_mode is None or labels is None:
        targets = None

    if shuffle:
        if seed is None:
            seed = int(_random.generator("shuffle").integers(10 ** 6))
        order = np.arange(len(paths))
        np.random.RandomState(seed).shuffle(order)  # Keras's generator: the same file order as Keras
        paths = [paths[i] for i in order]
        targets = None if targets is None else targets[order]

    channels = decode.CHANNELS[color_mode]
    image_shape = tuple(image_size) + (channels,)

    def load_one(path, out=None):
        try:
            image = decode.load_image(path, tuple(image_size), channels, interpolation,
                                      crop_to_aspect_ratio, pad_to_aspect_ratio, out=out)
            # float32 here, on the decoding thread (NumPy's cast releases the GIL): the batch
            # step then only copies (a resize kernel that returns float32 costs nothing more)
            return image.astype(np.float32, copy=False)
        except decode.ImageDecodeError as e:
            if bad_files == "raise":
                raise
            warnings.warn(f"image_dataset_from_directory: skipping {e}", RuntimeWarning, stacklevel=2)
            return None

    def make(sl, shuffled):
        sub_paths = paths[sl]
        sub_targets = None if targets is None else targets[sl]
        ds = _pipeline(sub_paths, sub_targets, label_mode, num_classes, load_one, batch_size, image_shape,
                       shuffled, seed, num_parallel_calls)
        out = ImageDirectoryDataset(ds, sub_paths, names, image_shape, load_one)
        out.labels = None if sub_targets is None else _encode_labels(sub_targets, label_mode, num_classes)
        return out

    if not validation_split:
        return make(slice(None), shuffle)
    n_val = int(validation_split * len(paths))
    n_train = len(paths) - n_val
    if n_val == 0 or n_train == 0:
        raise ValueError(f"validation_split={validation_split} of {len(paths)} files leaves {n_train} for "
                         f"training and {n_val} for validation; both must be non-empty")
    out = []
    if subset in ("training", "both"):
        print(f"Using {n_train} files for training.")
        out.append(make(slice(0, n_train), shuffle))
    if subset in ("validation", "both"):
        print(f"Using {n_val} files for validation.")
        out.append(make(slice(n_train, None), False))
    return tuple(out) if subset == "both" else out[0]


def _pipeline(paths, targets, label_mode, num_classes, load_one, batch_size, image_shape, shuffle, seed,
              workers):
    """paths (+ labels) -> shuffle -> decode to float32 on threads, each image into its row of
    its batch, unreadable files left out -> prefetch (as Keras's pipeline, which prefetches too)."""
    if targets is None:
        ds = Dataset.from_tensor_slices(np.asarray(paths, dtype=str))
    else:
        ds = Dataset.from_tensor_slices((np.asarray(paths, dtype=str),
                                         _encode_labels(targets, label_mode, num_classes)))
    if shuffle:
        ds = ds.shuffle(8 * batch_size if batch_size is not None else 1024, seed=seed)
    with_labels = targets is not None
    if batch_size is not None:
        return DecodedBatches(ds, load_one, batch_size, image_shape, workers, with_labels).prefetch(AUTOTUNE)
    ds = ds.map((lambda p, y: (load_one(str(p)), y)) if with_labels else (lambda p: load_one(str(p))),
                num_parallel_calls=workers)
    ds = _KeepCardinality(ds.filter((lambda img, y: img is not None) if with_labels else
                                    (lambda img: img is not None)), ds)
    return ds.prefetch(AUTOTUNE)


class _KeepCardinality(Dataset):
    """A filter that only drops unreadable files: it reports the cardinality of the input, so
    len() of the image dataset stays the file count (tf's filter would make it unknown)."""
    _keeps_element_shape = True

    def __init__(self, filtered, unfiltered):
        super().__init__(filtered)
        self._unfiltered = unfiltered

    def _iterate(self):
        return self._parent._iterate()

    def _cardinality(self):
        return self._unfiltered._cardinality()
