"""Record what Keras's image_dataset_from_directory makes of tests/image_folder.py's tree:
run with the peers venv (TensorFlow + Keras 3 + Pillow) from the repository root:

    /work/peers-venv/bin/python tests/golden/make_image_dataset_golden.py

Writes tests/golden/image_dataset.json (file orders, labels, printed lines, versions) and
tests/golden/image_dataset.npz (the images, float32), read by tests/test_dataset_images.py.
"""
import contextlib
import io
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import image_folder  # noqa: E402

CASES = {  # name: keyword arguments (shuffle=False, batch_size=None: one image per element, in file order)
    "rgb_bilinear": {"image_size": (12, 16)},
    "rgb_nearest_categorical": {"image_size": (24, 20), "interpolation": "nearest", "label_mode": "categorical"},
    # tf cannot decode BMP to one channel: the grayscale case names the other classes, in its own order
    "gray_crop": {"image_size": (12, 16), "color_mode": "grayscale", "crop_to_aspect_ratio": True,
                  "class_names": ["dog", "ant", "bee"]},
    "rgba_pad": {"image_size": (16, 16), "color_mode": "rgba", "pad_to_aspect_ratio": True,
                 "class_names": ["dog", "ant"]},  # tf decodes 4 channels from PNG only
}
SPLIT = {"image_size": (12, 16), "batch_size": 4, "seed": 123, "validation_split": 0.25, "subset": "both"}


def main():
    import keras
    import tensorflow as tf
    root = tempfile.mkdtemp()
    image_folder.make_tree(root)
    rel = lambda paths: [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]  # noqa: E731
    out = {"keras": keras.__version__, "tensorflow": tf.__version__, "cases": {}}
    arrays = {}
    for name, kw in CASES.items():
        ds = keras.utils.image_dataset_from_directory(root, shuffle=False, batch_size=None, **kw)
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
        arrays[name] = np.stack(xs).astype(np.float32)
        out["cases"][name] = {"kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()},
                              "file_paths": rel(ds.file_paths), "class_names": ds.class_names,
                              "labels": np.stack(ys).tolist()}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tr, va = keras.utils.image_dataset_from_directory(root, **SPLIT)
    out["split"] = {"kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in SPLIT.items()},
                    "train_files": rel(tr.file_paths), "val_files": rel(va.file_paths),
                    "stdout": buf.getvalue().splitlines(), "train_batches": int(tr.cardinality()),
                    "val_batches": int(va.cardinality())}
    with open(os.path.join(HERE, "image_dataset.json"), "w") as f:
        json.dump(out, f, indent=1)
    np.savez(os.path.join(HERE, "image_dataset.npz"), **arrays)
    print(json.dumps(out["split"], indent=1))


if __name__ == "__main__":
    main()
