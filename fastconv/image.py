"""Image resizing helpers (shims over fastconv.data.image_utils): ``resize`` as
``keras.ops.image.resize`` (bilinear, nearest, area; crop or pad to the aspect ratio),
``resize_with_pad`` as ``tf.image.resize_with_pad``, and ``smart_resize``.
"""
from .data.image_utils import resize, resize_with_pad, smart_resize  # noqa: F401

__all__ = ["resize", "resize_with_pad", "smart_resize"]
