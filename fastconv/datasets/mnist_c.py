"""MNIST-C (Mu & Gilmer 2019): MNIST under 15 corruptions, for robustness tests.

``load_data(corruption="identity", path=None)`` returns ``((x_train, y_train), (x_test, y_test))``
from the release's layout ``mnist_c/<corruption>/{train,test}_{images,labels}.npy``: images as
stored there, uint8 (N, 28, 28, 1); labels as integers (N,). Files are read with
``np.load(allow_pickle=False)``. Nothing is downloaded: `path` (the ``mnist_c`` folder or its
parent), ``$FASTCONV_DATA``, ``~/.fastconv/datasets`` and ``~/.keras/datasets`` are searched.
"""
import os

import numpy as np

from . import _files

CORRUPTIONS = ("identity", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale",
               "rotate", "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag",
               "canny_edges")
FILES = ("train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy")
SPEC = _files.Spec(name="mnist_c", mirrors=("https://zenodo.org/record/3239543",), sha256={})


def search_dirs(path=None):
    """Candidate ``mnist_c`` folders, in order."""
    out = []
    for d in _files.search_dirs(SPEC, path):
        out += [d, os.path.join(d, "mnist_c")]
    return list(dict.fromkeys(out))


def _load(p, kind):
    try:
        a = np.load(p, allow_pickle=False)
    except ValueError as e:  # object arrays need pickle: refused
        raise ValueError(f"{p}: not a plain numeric .npy file ({e})") from None
    if kind == "images" and not (a.dtype == np.uint8 and a.ndim in (3, 4) and a.shape[1:3] == (28, 28)):
        raise ValueError(f"{p}: expected uint8 images of shape (N, 28, 28, 1), found {a.dtype} {a.shape}")
    if kind == "labels" and not (a.ndim == 1 and np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{p}: expected integer labels of shape (N,), found {a.dtype} {a.shape}")
    return a


def load_data(corruption="identity", path=None):
    """Load one MNIST-C corruption (see CORRUPTIONS)."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {corruption!r}")
    if path is not None and not os.path.isdir(os.fspath(path)):
        raise FileNotFoundError(f"path={os.fspath(path)!r} is not a directory")
    for d in search_dirs(path):
        folder = os.path.join(d, corruption)
        if all(os.path.isfile(os.path.join(folder, f)) for f in FILES):
            x_train, y_train, x_test, y_test = (_load(os.path.join(folder, f), f.split("_")[1][:-4]) for f in FILES)
            for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
                if len(x) != len(y):
                    raise ValueError(f"{folder}: {split}_images holds {len(x)} images but {split}_labels "
                                     f"{len(y)} labels")
            return (x_train, y_train), (x_test, y_test)
    where = "\n".join("  " + os.path.join(d, corruption) for d in search_dirs(path))
    raise FileNotFoundError(f"MNIST-C {corruption!r} not found. Put {', '.join(FILES)} (from the release "
                            f"mnist_c.zip, {SPEC.mirrors[0]}) in one of:\n{where}\n"
                            f"(or set FASTCONV_DATA to the folder holding mnist_c/, or pass path=).")
