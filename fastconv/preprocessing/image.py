"""Keras's ``preprocessing.image`` path: ``image_dataset_from_directory`` (from fastconv.data).

Keras's ``ImageDataGenerator`` is not provided; the same augmentations exist as layers
(``fastconv.preprocessing.RandomFlip``/``RandomRotation``/``RandomZoom``/``RandomTranslation``)
and as batch functions in ``fastconv.augment`` - the error for the name says so.
"""
from .._missing import module_getattr
from ..data import image_dataset_from_directory  # noqa: F401

__getattr__ = module_getattr(__name__, hints={
    "ImageDataGenerator": "augment with the preprocessing layers at the model input "
                          "(fastconv.preprocessing.RandomFlip, RandomRotation, RandomZoom, RandomTranslation) "
                          "or the batch functions of fastconv.augment, and load folders with "
                          "image_dataset_from_directory",
})
