"""Shape and identity layers: ZeroPadding2D, Cropping2D, UpSampling2D, Flatten, Reshape, Permute,
RepeatVector, and the layers that are the identity at inference (Identity, Dropout,
SpatialDropout2D, GaussianNoise).

Flatten and Reshape follow Keras's row-major NHWC order, so they act on the Keras layout (an
NCHW value is transposed back first); padding, cropping and upsampling stay in NCHW.
"""
import numpy as np

from ..layers.cropping2d import Cropping2D
from ..layers.dropout import Dropout
from ..layers.flatten import Flatten
from ..layers.gaussian_noise import GaussianNoise
from ..layers.identity import Identity
from ..layers.permute import Permute
from ..layers.repeat_vector import RepeatVector
from ..layers.reshape import Reshape
from ..layers.spatial_dropout2d import SpatialDropout2D
from ..layers.upsampling2d import UpSampling2D
from ..layers.zero_padding2d import ZeroPadding2D
from .graph import Value
from .registry import register


@register(Identity, Dropout, SpatialDropout2D, GaussianNoise)
def _identity_at_inference(g, layer, x):
    return x


@register(ZeroPadding2D)
def _zero_padding(g, layer, x):
    x = g.as_nchw(x, layer.name)
    (t, b), (l, r) = layer.padding
    pads = g.ints([0, 0, t, l, 0, 0, b, r], f"{layer.name}/pads")
    y = g.op("Pad", [x.name, pads], f"{layer.name}/pad", mode="constant")
    return Value(y, "nchw", layer.compute_output_shape(x.shape))


@register(Cropping2D)
def _cropping(g, layer, x):
    x = g.as_nchw(x, layer.name)
    (t, b), (l, r) = layer.cropping
    big = np.iinfo(np.int64).max
    # Ends counted from the end (negative), so the crop needs no static height or width.
    ends = [-b if b else big, -r if r else big]
    y = g.op("Slice", [x.name, g.ints([t, l], f"{layer.name}/starts"), g.ints(ends, f"{layer.name}/ends"),
                       g.ints([2, 3], f"{layer.name}/axes")], f"{layer.name}/crop")
    return Value(y, "nchw", layer.compute_output_shape(x.shape))


@register(UpSampling2D)
def _upsampling(g, layer, x):
    x = g.as_nchw(x, layer.name)
    scales = g.const(np.array([1, 1, *layer.size], np.float32), f"{layer.name}/scales")
    if layer.interpolation == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:  # tf.image.resize's bilinear: half-pixel centres
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    y = g.op("Resize", [x.name, "", scales], f"{layer.name}/resize", **attrs)
    return Value(y, "nchw", layer.compute_output_shape(x.shape))


@register(Flatten)
def _flatten(g, layer, x):
    x = g.as_keras(x)
    if x.ndim == 2:
        return x
    return Value(g.op("Flatten", [x.name], f"{layer.name}/flatten", axis=1), "keras",
                 layer.compute_output_shape(x.shape))


@register(Reshape)
def _reshape(g, layer, x):
    x = g.as_keras(x)
    shape = g.ints([0, *layer.target_shape], f"{layer.name}/shape")  # 0: keep the (dynamic) batch
    return Value(g.op("Reshape", [x.name, shape], f"{layer.name}/reshape"), "keras",
                 layer.compute_output_shape(x.shape))


@register(Permute)
def _permute(g, layer, x):
    x = g.as_keras(x)  # dims number Keras's (NHWC) axes
    y = g.op("Transpose", [x.name], f"{layer.name}/transpose", perm=[0, *layer.dims])
    return Value(y, "keras", layer.compute_output_shape(x.shape))


@register(RepeatVector)
def _repeat_vector(g, layer, x):
    x = g.as_keras(x)
    row = g.op("Unsqueeze", [x.name, g.ints([1], f"{layer.name}/axis")], f"{layer.name}/unsqueeze")
    # Expand broadcasts (N, 1, F) against (1, n, 1): the batch and features are kept.
    y = g.op("Expand", [row, g.ints([1, layer.n, 1], f"{layer.name}/shape")], f"{layer.name}/expand")
    return Value(y, "keras", layer.compute_output_shape(x.shape))
