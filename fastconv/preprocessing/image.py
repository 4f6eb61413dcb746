"""Keras's ``preprocessing.image`` path (shims; the code lives in fastconv.data):
``ImageDataGenerator`` and its iterators, ``load_img``, ``img_to_array``, ``array_to_img``,
``save_img``, ``smart_resize``, and ``image_dataset_from_directory``.
"""
from ..data import image_dataset_from_directory  # noqa: F401
from ..data.image_generator import (DirectoryIterator, ImageDataGenerator, Iterator,  # noqa: F401
                                    NumpyArrayIterator, apply_brightness_shift, apply_channel_shift)
from ..data.image_utils import array_to_img, img_to_array, load_img, save_img, smart_resize  # noqa: F401
from .._missing import module_getattr

__getattr__ = module_getattr(__name__, hints={
    "DataFrameIterator": "flow_from_dataframe is not provided (fastconv does not depend on pandas): "
                         "put the images in class sub-folders and use flow_from_directory, or load them "
                         "with load_img and use flow",
})
