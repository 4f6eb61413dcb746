"""Writes tests/golden/preprocessing_layers.npz: Keras 3's RandomRotation, RandomZoom and
RandomTranslation at fixed transforms (a factor pair (a, a) draws exactly a) for every fill_mode
and interpolation, Resizing with pad_to_aspect_ratio / crop_to_aspect_ratio, and tf.image.resize
"bicubic"/"area" (when tensorflow is there too), on small fixed
inputs: the reference for tests/test_preprocessing_keras3.py. Run with a Python that has Keras 3:

    KERAS_BACKEND=numpy python tests/golden/make_preprocessing_golden.py [out.npz [in.npz]]

The stored file comes from the numpy backend (its affine warp extends the image by padding, as
the jax and torch backends do); the TensorFlow backend agrees except for fill_mode="wrap", where
tf.raw_ops.ImageProjectiveTransformV3 wraps with a period that mixes H and H-1 (the live test
compares the other modes with it). With in.npz, the inputs come from that file (live mode).
"""
import os
import sys

import numpy as np

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
FILL_VALUE = 17.0
# (layer, case name, constructor arguments besides the fill ones)
CASES = (
    ("RandomRotation", "rot_a", dict(factor=(0.1, 0.1))),
    ("RandomRotation", "rot_b", dict(factor=(-0.3, -0.3))),
    ("RandomZoom", "zoom_out", dict(height_factor=(0.27, 0.27))),
    ("RandomZoom", "zoom_in", dict(height_factor=(-0.35, -0.35))),
    ("RandomZoom", "zoom_hw", dict(height_factor=(0.2, 0.2), width_factor=(-0.45, -0.45))),
    ("RandomTranslation", "shift_a", dict(height_factor=(0.25, 0.25), width_factor=(-0.3, -0.3))),
    ("RandomTranslation", "shift_b", dict(height_factor=(-0.7, -0.7), width_factor=(0.8, 0.8))),
)
RESIZE_CASES = ((6, 6), (4, 12), (12, 5))
# tf.image.resize (Keras 3's Resizing on the tensorflow backend; its torch backend's bicubic is
# torch's, a = -0.75) for the methods beyond bilinear/nearest
TF_RESIZE_CASES = ((6, 6), (4, 12), (12, 5), (20, 25), (9, 11))
TF_RESIZE_METHODS = ("bicubic", "area", "lanczos3", "lanczos5")


def inputs(seed=19):
    rng = np.random.default_rng(seed)
    return {"x": rng.integers(0, 256, (1, 9, 11, 2)).astype(np.float32)}


def compute(arrays):
    import keras

    x = arrays["x"]
    out = dict(arrays)
    for layer, name, args in CASES:
        for mode in FILL_MODES:
            for interp in INTERPOLATIONS:
                lay = getattr(keras.layers, layer)(**args, fill_mode=mode, interpolation=interp,
                                                   fill_value=FILL_VALUE, seed=1)
                out[f"{name}_{mode}_{interp}"] = np.asarray(lay(x, training=True))
    for h, w in RESIZE_CASES:
        for interp in INTERPOLATIONS:
            out[f"resize_crop_{h}_{w}_{interp}"] = np.asarray(
                keras.layers.Resizing(h, w, interpolation=interp, crop_to_aspect_ratio=True)(x))
            out[f"resize_pad_{h}_{w}_{interp}"] = np.asarray(
                keras.layers.Resizing(h, w, interpolation=interp, pad_to_aspect_ratio=True,
                                      fill_value=FILL_VALUE)(x))
    try:
        import tensorflow as tf
    except ImportError:
        print("tensorflow missing: the bicubic/area cases are not written", file=sys.stderr)
    else:
        for h, w in TF_RESIZE_CASES:
            for method in TF_RESIZE_METHODS:
                out[f"tf_resize_{method}_{h}_{w}"] = tf.image.resize(x, (h, w), method=method).numpy()
    out["keras_backend"] = np.array(keras.backend.backend())
    return out


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                                "preprocessing_layers.npz")
    if len(sys.argv) > 2:
        with np.load(sys.argv[2]) as f:
            arrays = {k: f[k] for k in f.files}
    else:
        arrays = inputs()
    np.savez_compressed(target, **compute(arrays))
