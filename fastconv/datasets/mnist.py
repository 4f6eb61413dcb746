"""MNIST handwritten digits (LeCun, Cortes, Burges): 70,000 28x28 grayscale images.

``load_data(path=None, download=True)`` returns ``((x_train, y_train), (x_test, y_test))``:
uint8 arrays of shapes (60000, 28, 28), (60000,), (10000, 28, 28), (10000,), as Keras does.
Also reads Keras's cached ``~/.keras/datasets/mnist.npz``. Search order and download:
:mod:`fastconv.datasets._files`.
"""
from . import _files

SPEC = _files.Spec(
    name="mnist",
    mirrors=("https://storage.googleapis.com/cvdf-datasets/mnist/",
             "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    # SHA-256 of the canonical .gz files as served by the mirrors above
    sha256={
        "train-images-idx3-ubyte": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", None),
        "train-labels-idx1-ubyte": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", None),
        "t10k-images-idx3-ubyte": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", None),
        "t10k-labels-idx1-ubyte": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", None),
    },
    keras_npz="mnist.npz",
)


def available(path=None):
    """True when the files are present locally (no download attempted)."""
    return _files.find_files(SPEC, path) is not None


def load_data(path=None, download=True):
    """Load MNIST as uint8 arrays; `path` is a directory holding the four IDX files."""
    return _files.load(SPEC, path, download_if_missing=download)
