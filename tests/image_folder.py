"""A small class-folder tree of real image files (PNG, JPEG, BMP, GIF) written by Pillow from
seeded pixels: the same files on every machine, for tests/test_dataset_images.py and for
tests/golden/make_image_dataset_golden.py (which records what Keras makes of them).

Every image is at most 12x16, so the 12x16 target size only enlarges (Pillow and TensorFlow
agree on enlarging; see fastconv/data/decode.py)."""
import os

import numpy as np

# (relative path, (height, width), source mode)
FILES = [
    ("ant/a0.png", (12, 16), "RGB"),
    ("ant/a1.png", (8, 8), "RGB"),
    ("ant/a2.PNG", (6, 10), "L"),
    ("bee/b0.jpg", (12, 16), "RGB"),
    ("bee/b1.jpeg", (10, 12), "RGB"),
    ("bee/more/b2.JPG", (12, 12), "L"),
    ("cat/c0.bmp", (12, 16), "RGB"),
    ("cat/c1.bmp", (9, 7), "RGB"),
    ("cat/c2.gif", (12, 16), "P"),
    ("cat/c3.gif", (5, 9), "P"),
    ("dog/d0.png", (11, 16), "RGBA"),
    ("dog/d1.png", (12, 16), "RGB"),
]
IGNORED = ["ant/notes.txt", ".hidden/x.png"]
CLASSES = ["ant", "bee", "cat", "dog"]


def pixels(index, shape, mode):
    rng = np.random.default_rng(1000 + index)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 127 / (h + w)], -1)
    a = np.clip(base * 0.6 + rng.integers(0, 100, (h, w, 3)), 0, 255).astype(np.uint8)
    if mode == "L":
        return a[..., 0]
    if mode == "RGBA":
        return np.concatenate([a, rng.integers(0, 256, (h, w, 1), dtype=np.uint8)], -1)
    return a


def make_tree(root):
    """Write the tree under `root` (a folder that exists); returns the sorted class names."""
    from PIL import Image
    for i, (rel, shape, mode) in enumerate(FILES):
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        a = pixels(i, shape, mode)
        if mode == "P":
            im = Image.fromarray(a).quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        else:
            im = Image.fromarray(a)
        fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF"}[
            os.path.splitext(rel)[1].lower()]
        im.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    for rel in IGNORED:
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"not an image in a folder the index skips")
    return CLASSES
