"""The UCI optical handwritten digits set, shipped inside fastconv so it needs no network.

1,797 real 8x8 images of handwritten digits 0-9 (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0; see
``fastconv/datasets/data/README.md``). Each original pixel counts the set pixels in a 4x4 block
of a 32x32 bitmap (0..16); ``load_data`` rescales that to 0..255 so the images look like MNIST's.

>>> (x, y), (xt, yt) = load_data()
>>> x.shape, xt.shape, x.dtype, int(x.max())
((1438, 8, 8), (359, 8, 8), dtype('uint8'), 255)
>>> load_data(upscale_to=28)[0][0].shape
(1438, 28, 28)
"""
import gzip
import os

import numpy as np

_FILE = os.path.join(os.path.dirname(__file__), "data", "digits.csv.gz")
N_IMAGES = 1797


def _read():
    with gzip.open(_FILE, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (N_IMAGES, 65):
        raise ValueError(f"{_FILE}: expected a {N_IMAGES}x65 table, found {table.shape}")
    images = table[:, :64].reshape(-1, 8, 8)
    if images.min() < 0 or images.max() > 16:
        raise ValueError(f"{_FILE}: pixel counts must be 0..16")
    return images, table[:, 64].astype(np.uint8)


def _interp_matrix(n_out, n_in):
    """(n_out, n_in) linear-interpolation weights with half-pixel centres (TF/PIL 'bilinear')."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def upscale(images, size):
    """Bilinear resize of (N, h, w) images to (N, size, size); output dtype follows uint8 rounding."""
    images = np.asarray(images)
    n, h, w = images.shape
    rows, cols = _interp_matrix(size, h), _interp_matrix(size, w)
    # separable: resize the rows, then the columns, as two batched matrix products
    out = rows @ images.astype(np.float64) @ cols.T
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def load_data(upscale_to=None, test_split=0.2, seed=0):
    """((x_train, y_train), (x_test, y_test)): uint8 images (N, 8, 8), or (N, S, S) upscaled.

    upscale_to: None for the original 8x8, or an int S >= 8 (28 makes LeNet-5-sized inputs).
    test_split: fraction of the 1,797 images held out for testing (0 <= test_split < 1).
    seed: the held-out set is a seeded permutation, so the same seed gives the same split.
    Pixels are 0..255 (the original 0..16 counts times 255/16, rounded); labels uint8 0..9.
    """
    if not (isinstance(test_split, (int, float)) and 0 <= test_split < 1):
        raise ValueError(f"test_split must be a fraction in [0, 1), got {test_split!r}")
    if upscale_to is not None and (isinstance(upscale_to, bool) or not isinstance(upscale_to, int)
                                   or upscale_to < 8):
        raise ValueError(f"upscale_to must be None or an int >= 8, got {upscale_to!r}")
    counts, labels = _read()
    images = np.rint(counts * (255.0 / 16.0)).astype(np.uint8)
    if upscale_to is not None and upscale_to != 8:
        images = upscale(images, upscale_to)
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(len(images) * test_split))
    test, train = order[:n_test], order[n_test:]
    return (images[train], labels[train]), (images[test], labels[test])
