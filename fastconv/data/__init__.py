"""Input pipelines: the :class:`Dataset` API (tf.data's shape), image folders
(:func:`image_dataset_from_directory`), batching (:class:`BatchLoader`, shared with ``fit``),
augmentation (:mod:`fastconv.data.augment`) and image decoding (:mod:`fastconv.data.decode`).

Modules: ``dataset`` (the pipeline's API) and ``stages`` (its steps), ``batching`` (the one
shuffle+batch path), ``adapters`` (what ``fit``/``evaluate``/``predict`` accept),
``parallel``/``prefetch`` (threads), ``cache``, ``decode`` (JPEG/PNG/BMP/GIF to arrays,
resizing), ``image_dataset``, ``augment``, ``structure`` (nested elements).
"""
from .batching import BatchLoader  # noqa: F401
from .dataset import (AUTOTUNE, INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Dataset,  # noqa: F401
                      TensorSpec)
from .image_dataset import ImageDirectoryDataset, image_dataset_from_directory  # noqa: F401
