"""Preprocessing layers at inference: Resizing, CenterCrop, RandomCrop (Keras's smart_resize
when not training), and the random augmentations, which are the identity at inference
(RandomBrightness, RandomContrast, RandomFlip, RandomRotation, RandomZoom, RandomTranslation).

Resizing is tf.image.resize without antialiasing: ONNX Resize with half-pixel centres for
bilinear and floor((i + 0.5) * in / out) for nearest, after a Slice (crop_to_aspect_ratio) or a
constant Pad with fill_value (pad_to_aspect_ratio); its other interpolations are refused. The target size
goes in as `sizes` (the batch axis read from the input at run time), never as a float scale
that could round to the wrong length. Windows are cut from the static input size, so these
layers need a known height and width.
"""

import numpy as np

from ..layers._preprocessing import aspect_crop, aspect_pad
from ..layers.center_crop import CenterCrop
from ..layers.random_brightness import RandomBrightness
from ..layers.random_contrast import RandomContrast
from ..layers.random_crop import RandomCrop
from ..layers.resizing import Resizing
from ..layers import RandomFlip, RandomRotation, RandomTranslation, RandomZoom
from .graph import Value
from .registry import register, unsupported


def _static_hw(layer, x):
    if None in x.shape[1:3]:
        raise unsupported(layer, f"it needs a known input height and width, got input shape {x.shape}")
    return x.shape[1], x.shape[2]


def crop(g, x, top, left, height, width, name):
    x = g.as_nchw(x, name)
    y = g.op("Slice", [x.name, g.ints([top, left], f"{name}/starts"),
                       g.ints([top + height, left + width], f"{name}/ends"), g.ints([2, 3], f"{name}/axes")],
             f"{name}/crop")
    return Value(y, "nchw", (x.shape[0], height, width, x.shape[3]))


def resize(g, x, height, width, interpolation, name):
    x = g.as_nchw(x, name)
    batch_channels = g.op("Slice", [g.op("Shape", [x.name], f"{name}/shape"), g.ints([0], f"{name}/s0"),
                                    g.ints([2], f"{name}/s2")], f"{name}/nc")
    sizes = g.op("Concat", [batch_channels, g.ints([height, width], f"{name}/hw")], f"{name}/sizes", axis=0)
    if interpolation == "bilinear":
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    else:
        # floor((i + 0.5) * in / out) == round_prefer_ceil((i + 0.5) * in / out - 0.5), the
        # half-pixel source coordinate (opset 13 dropped tf_half_pixel_for_nn, which says it directly).
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_ceil"}
    y = g.op("Resize", [x.name, "", "", sizes], f"{name}/resize", **attrs)
    return Value(y, "nchw", (x.shape[0], height, width, x.shape[3]))


def center_crop(g, layer, x):
    h, w = _static_hw(layer, x)
    if h >= layer.height and w >= layer.width:
        return crop(g, x, (h - layer.height) // 2, (w - layer.width) // 2, layer.height, layer.width, layer.name)
    x = crop(g, x, *aspect_crop(h, w, layer.height, layer.width), layer.name)
    return resize(g, x, layer.height, layer.width, "bilinear", layer.name)


register(CenterCrop)(center_crop)


@register(RandomCrop)
def _random_crop_at_inference(g, layer, x):
    # Keras's smart_resize: the largest centred window of the target aspect ratio, resized
    x = crop(g, x, *aspect_crop(*_static_hw(layer, x), layer.height, layer.width), layer.name)
    return resize(g, x, layer.height, layer.width, "bilinear", layer.name)


@register(Resizing)
def _resizing(g, layer, x):
    if layer.interpolation not in ("bilinear", "nearest"):
        raise unsupported(layer, f"interpolation={layer.interpolation!r} is not exported yet (bilinear, nearest are)")
    if layer.crop_to_aspect_ratio:
        x = crop(g, x, *aspect_crop(*_static_hw(layer, x), layer.height, layer.width), layer.name)
    elif getattr(layer, "pad_to_aspect_ratio", False):
        h, w = _static_hw(layer, x)
        top, left = aspect_pad(h, w, layer.height, layer.width)
        if top or left:
            x = g.as_nchw(x, layer.name)
            pads = g.ints([0, 0, top, left, 0, 0, top, left], f"{layer.name}/aspect_pads")
            fill = g.const(np.float32(layer.fill_value), f"{layer.name}/fill_value")
            y = g.op("Pad", [x.name, pads, fill], f"{layer.name}/aspect_pad", mode="constant")
            x = Value(y, "nchw", (x.shape[0], h + 2 * top, w + 2 * left, x.shape[3]))
    return resize(g, x, layer.height, layer.width, layer.interpolation, layer.name)


@register(RandomBrightness, RandomContrast, RandomFlip, RandomRotation, RandomZoom, RandomTranslation)
def _identity_at_inference(g, layer, x):
    return x


