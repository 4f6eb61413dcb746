"""Writes tests/golden/data_kernels.npz: tf.image.resize and Keras's ImageDataGenerator
transforms on small fixed inputs, the reference for tests/test_data_kernels.py and
tests/test_image_generator.py. Run with an interpreter that has tensorflow, keras and scipy:

    python tests/golden/make_data_kernels_golden.py [out.npz]

Also used live by those tests (FASTCONV_PEER_PYTHON=<python with tensorflow>) on other inputs.
"""
import sys

import numpy as np

RESIZE_SIZES = ((5, 7), (18, 22), (9, 11), (4, 30), (3, 3))
# (theta, tx, ty, shear, zx, zy) in Keras's apply_transform naming: tx moves rows, ty columns
AFFINE_PARAMS = ((30.0, 0.0, 0.0, 0.0, 1.0, 1.0), (0.0, 2.5, -3.0, 0.0, 1.0, 1.0),
                 (0.0, 0.0, 0.0, 20.0, 1.0, 1.0), (0.0, 0.0, 0.0, 0.0, 0.8, 1.3),
                 (-45.0, 1.5, 2.0, 10.0, 1.2, 0.9))
FILL_MODES = ("constant", "nearest", "reflect", "wrap")
BRIGHTNESS = (0.5, 1.0, 1.7)
PAD_SIZES = ((8, 8), (20, 10), (5, 16))
ASPECT_SIZES = ((6, 6), (4, 12), (12, 5))


def inputs(seed=19):
    rng = np.random.default_rng(seed)
    return {"resize_x": rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8),
            "affine_x": rng.uniform(0, 255, (9, 11, 2)).astype(np.float32),
            "bright_x": rng.uniform(0, 255, (6, 5, 3)).astype(np.float32)}


def compute(arrays):
    import tensorflow as tf
    from keras.src.legacy.preprocessing import image as legacy

    out = dict(arrays)
    for m in ("bilinear", "nearest", "area"):
        for h, w in RESIZE_SIZES:
            out[f"resize_{m}_{h}_{w}"] = tf.image.resize(arrays["resize_x"], (h, w), method=m).numpy()
    import keras
    xf = arrays["resize_x"].astype(np.float32)
    for h, w in PAD_SIZES:
        for m in ("bilinear", "nearest"):
            out[f"with_pad_{m}_{h}_{w}"] = tf.image.resize_with_pad(xf, h, w, method=m).numpy()
    for h, w in ASPECT_SIZES:
        out[f"crop_aspect_{h}_{w}"] = np.asarray(keras.ops.image.resize(xf, (h, w), crop_to_aspect_ratio=True))
        out[f"pad_aspect_{h}_{w}"] = np.asarray(keras.ops.image.resize(xf, (h, w), pad_to_aspect_ratio=True,
                                                                       fill_value=3.0))
        out[f"smart_{h}_{w}"] = np.asarray(keras.preprocessing.image.smart_resize(xf[0], (h, w)))
    try:
        import scipy  # noqa: F401 - Keras's affine transform needs it
    except ImportError:
        print("scipy missing: the affine cases are not written", file=sys.stderr)
    else:
        for mode in FILL_MODES:
            gen = legacy.ImageDataGenerator(fill_mode=mode, cval=17.0)
            for i, (theta, tx, ty, shear, zx, zy) in enumerate(AFFINE_PARAMS):
                params = dict(theta=theta, tx=tx, ty=ty, shear=shear, zx=zx, zy=zy)
                out[f"affine_{mode}_{i}"] = gen.apply_transform(arrays["affine_x"].copy(), params)
    for i, b in enumerate(BRIGHTNESS):
        out[f"brightness_{i}"] = legacy.apply_brightness_shift(arrays["bright_x"].copy(), b, False)
    return out


if __name__ == "__main__":
    import os
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data_kernels.npz")
    if len(sys.argv) > 2:  # live mode: inputs from a file
        with np.load(sys.argv[2]) as f:
            arrays = {k: f[k] for k in f.files}
    else:
        arrays = inputs()
    np.savez_compressed(target, **compute(arrays))
