"""Keras-path preprocessing: ``preprocessing.image`` (loaded on first use) and, as Keras 2
scripts spell them, the random preprocessing layers (they live in fastconv.layers, as in Keras 3).
"""
from .._missing import module_getattr
from ..data import image_dataset_from_directory  # noqa: F401  (Keras 2.9+ path)
from ..layers.random_flip import RandomFlip  # noqa: F401
from ..layers.random_rotation import RandomRotation  # noqa: F401
from ..layers.random_translation import RandomTranslation  # noqa: F401
from ..layers.random_zoom import RandomZoom  # noqa: F401

# preprocessing.image pulls in the image-folder pipeline: loaded on first use.
__getattr__ = module_getattr(__name__, lazy={"image": ".image"})
