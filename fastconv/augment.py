"""Old import path of :mod:`fastconv.data.augment` (kept so existing code keeps working)."""
from .data.augment import (Augment, affine, random_affine, random_brightness,  # noqa: F401
                           random_crop_with_padding, random_flip, random_shift)
