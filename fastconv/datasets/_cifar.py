"""Reading CIFAR-10/100 from the files Keras and the CIFAR site use, offline and without running
code from them.

Accepted, in each searched directory (first match wins):

- the Python version, as Keras caches it: ``<batches-dir>/`` holding the batch files
  (``cifar-10-batches-py/data_batch_1..5, test_batch``; ``cifar-100-python/train, test``), also
  inside Keras 3's ``<batches-dir>-target/`` folder, or the ``.tar.gz`` of it, read in place;
- the binary version (plain records: label byte(s) then 3072 pixel bytes):
  ``cifar-10-batches-bin/data_batch_1..5.bin, test_batch.bin``,
  ``cifar-100-binary/train.bin, test.bin``, or their ``.tar.gz``.

The Python batches are pickles. fastconv never unpickles: :mod:`fastconv.datasets._pickled_data`
reads the data-only subset of the format (dicts, lists, bytes, ints, numeric NumPy arrays)
without the pickle module and refuses anything else, so a crafted file cannot run code; the
arrays found are then checked for dtype and shape.
"""
import os
import tarfile

import numpy as np

from . import _files, _pickled_data

IMAGE_BYTES = 3 * 32 * 32


def read_python_batch(blob, label_key, origin):
    """(images (N, 32, 32, 3) uint8, labels (N,) int64) from one pickled batch's bytes."""
    d = _pickled_data.read(blob, origin)
    if not isinstance(d, dict):
        raise ValueError(f"{origin}: a CIFAR batch is a dict, found {type(d).__name__}")
    d = {k.decode("utf8") if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or label_key not in d:
        raise ValueError(f"{origin}: a CIFAR batch needs 'data' and {label_key!r}, found keys {sorted(d)}")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise ValueError(f"{origin}: 'data' must be uint8 of shape (N, {IMAGE_BYTES}), found {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{origin}: {label_key!r} must be {len(data)} integers, found {labels.dtype} {labels.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def read_binary_batch(blob, label_bytes, label_index, origin):
    """(images, labels) from a binary-version file: records of `label_bytes` label bytes then
    3072 pixel bytes (channel planes, row-major)."""
    rec = label_bytes + IMAGE_BYTES
    if len(blob) == 0 or len(blob) % rec:
        raise ValueError(f"{origin}: {len(blob)} bytes is not a whole number of {rec}-byte CIFAR records")
    a = np.frombuffer(blob, np.uint8).reshape(-1, rec)
    return a[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), a[:, label_index].astype(np.int64)


class Layout:
    """Where one data set's files live: folder and tarball names for both versions."""

    def __init__(self, name, py_dir, py_tar, py_train, py_test, bin_dir, bin_tar, bin_train, bin_test):
        self.name, self.py_dir, self.py_tar, self.py_train, self.py_test = name, py_dir, py_tar, py_train, py_test
        self.bin_dir, self.bin_tar, self.bin_train, self.bin_test = bin_dir, bin_tar, bin_train, bin_test
        self.spec = _files.Spec(name=name, mirrors=("https://www.cs.toronto.edu/~kriz/",), sha256={})


def _dirs(layout, path):
    dirs = _files.search_dirs(layout.spec, path)
    keras = os.path.join(os.path.expanduser("~"), ".keras", "datasets")
    return dirs + [keras]


def _from_folder(folder, names):
    if all(os.path.isfile(os.path.join(folder, n)) for n in names):
        def read(n):
            with open(os.path.join(folder, n), "rb") as f:
                return f.read()
        return {n: read(n) for n in names}
    return None


def _from_tar(tar_path, inner_dir, names):
    with tarfile.open(tar_path, "r:*") as tar:  # members are read as bytes; nothing is extracted
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        out = {}
        for n in names:
            m = members.get(f"{inner_dir}/{n}")
            if m is None:
                raise ValueError(f"{tar_path}: no member {inner_dir}/{n}")
            out[n] = tar.extractfile(m).read()
        return out


def find(layout, path=None):
    """('python' | 'binary', {file name: bytes}, origin) from the first place that has them."""
    py_names = layout.py_train + layout.py_test
    bin_names = layout.bin_train + layout.bin_test
    for d in _dirs(layout, path):
        for kind, names, sub, tar in (("python", py_names, layout.py_dir, layout.py_tar),
                                      ("binary", bin_names, layout.bin_dir, layout.bin_tar)):
            for folder in (os.path.join(d, sub), os.path.join(d, sub + "-target", sub), d):
                found = _from_folder(folder, names)
                if found:
                    return kind, found, folder
            if os.path.isfile(os.path.join(d, tar)):
                return kind, _from_tar(os.path.join(d, tar), sub, names), os.path.join(d, tar)
    raise FileNotFoundError(not_found_message(layout, path))


def not_found_message(layout, path=None):
    where = "\n".join("  " + d for d in _dirs(layout, path))
    return (f"{layout.name} files not found (fastconv does not download them). Put one of\n"
            f"  {layout.py_tar} (or its extracted folder {layout.py_dir}/), or\n"
            f"  {layout.bin_tar} (or its extracted folder {layout.bin_dir}/)\n"
            f"from https://www.cs.toronto.edu/~kriz/cifar.html into one of:\n{where}\n"
            f"(or set FASTCONV_DATA to that directory, or pass path=).")


def load(layout, path, label_key, label_bytes, label_index, num_classes):
    """((x_train, y_train), (x_test, y_test)): uint8 (N, 32, 32, 3) images, int64 (N, 1) labels."""
    kind, blobs, origin = find(layout, path)
    parts = []
    for names in ((layout.py_train, layout.py_test) if kind == "python" else (layout.bin_train, layout.bin_test)):
        xs, ys = [], []
        for n in names:
            where = os.path.join(origin, n)
            if kind == "python":
                x, y = read_python_batch(blobs[n], label_key, where)
            else:
                x, y = read_binary_batch(blobs[n], label_bytes, label_index, where)
            if len(y) and (y.min() < 0 or y.max() >= num_classes):
                raise ValueError(f"{where}: labels must be 0..{num_classes - 1}, found {int(y.min())}..{int(y.max())}")
            xs.append(x)
            ys.append(y)
        parts.append((np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys).reshape(-1, 1)))
    return tuple(parts)
