"""Fashion-MNIST (Zalando, MIT licence): 70,000 28x28 grayscale images of 10 clothing classes.

``load_data(path=None, download=True)`` returns ``((x_train, y_train), (x_test, y_test))``:
uint8 arrays of shapes (60000, 28, 28), (60000,), (10000, 28, 28), (10000,), as Keras does.
Where it looks for the files, and how it downloads them, is described in
:mod:`fastconv.datasets._files`; Debian's ``dataset-fashion-mnist`` package installs them in
``/usr/share/datasets/fashion-mnist``.
"""
from . import _files

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

SPEC = _files.Spec(
    name="fashion-mnist",
    mirrors=("https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
    # SHA-256 of the decompressed IDX bytes (identical in every copy, however it was gzipped)
    sha256={
        "train-images-idx3-ubyte": (None, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": (None, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": (None, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": (None, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    debian_package="dataset-fashion-mnist",
)


def available(path=None):
    """True when the files are present locally (no download attempted)."""
    return _files.find_files(SPEC, path) is not None


def load_data(path=None, download=True):
    """Load Fashion-MNIST as uint8 arrays; `path` is a directory holding the four IDX files."""
    return _files.load(SPEC, path, download_if_missing=download)
