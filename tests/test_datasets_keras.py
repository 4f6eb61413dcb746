"""Keras-path data sets read offline (issue 19 part 4): cifar10, cifar100 (python pickles read
without running code, binary records, tarballs, Keras's cache folders), mnist_c (.npy release
layout), and mnist from Keras's mnist.npz. Tiny files are written into a temporary HOME; the
expected arrays are built independently here (the CIFAR record layout written out by hand)."""
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from fastconv.datasets import _files, cifar10, cifar100, mnist, mnist_c


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setattr(_files, "SYSTEM_ROOT", str(tmp_path / "sysroot"))
    return h


def _images(n, seed):
    """(n, 32, 32, 3) uint8 images and their CIFAR row layout: R plane, G plane, B plane."""
    x = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    rows = np.concatenate([x[..., c].reshape(n, 1024) for c in range(3)], axis=1)
    return x, rows


def _py_batch(rows, labels, label_key="labels", protocol=2):
    # the CIFAR batch contents: byte-string keys, labels a list, data a uint8 array
    return pickle.dumps({b"batch_label": b"batch", label_key.encode(): [int(v) for v in labels], b"data": rows,
                         b"filenames": [b"f%d.png" % i for i in range(len(labels))]}, protocol=protocol)


def _py2_batch(rows, labels):
    """The byte stream Python 2's cPickle (protocol 2) wrote for the CIFAR site's batches:
    SHORT_BINSTRING keys, GLOBAL numpy.core.multiarray._reconstruct, the pixels as one BINSTRING."""
    def s(b):
        return b"U" + bytes([len(b)]) + b
    out = [b"\x80\x02}q\x01(", s(b"data"),
           b"cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85U\x01b\x87R",
           b"(K\x01K" + bytes([rows.shape[0]]) + b"M" + struct.pack("<H", rows.shape[1]) + b"\x86",
           b"cnumpy\ndtype\nq\x04U\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
           b"\x89T" + struct.pack("<i", rows.nbytes) + rows.tobytes() + b"tb",
           s(b"labels"), b"]q\x05(" + b"".join(b"K" + bytes([int(v)]) for v in labels) + b"e",
           s(b"batch_label"), s(b"testing batch 1 of 1"), b"u."]
    return b"".join(out)


def _write_cifar10_python(folder, n=4):
    os.makedirs(folder)
    xs, ys = [], []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x, rows = _images(n, i)
        y = (np.arange(n) + i) % 10
        # the Python 2 stream of the real files, and what Python 3 writes with protocols 2, 4, 5
        blob = _py2_batch(rows, y) if i in (0, 5) else _py_batch(rows, y, protocol=(2, 4, 5, 2, 2, 2)[i])
        (folder / name).write_bytes(blob)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def test_cifar10_python_batches_in_keras_cache(home):
    x_train, y_train, x_test, y_test = _write_cifar10_python(home / ".keras" / "datasets" / "cifar-10-batches-py")
    (xt, yt), (xs, ys) = cifar10.load_data()
    assert xt.shape == (20, 32, 32, 3) and xt.dtype == np.uint8 and yt.shape == (20, 1) and yt.dtype == np.uint8
    np.testing.assert_array_equal(xt, x_train)
    np.testing.assert_array_equal(yt[:, 0], y_train)
    np.testing.assert_array_equal(xs, x_test)
    np.testing.assert_array_equal(ys[:, 0], y_test)


def test_cifar10_keras3_target_folder_and_tarball(home, tmp_path):
    target = home / ".keras" / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    x_train, _, _, _ = _write_cifar10_python(target)
    np.testing.assert_array_equal(cifar10.load_data()[0][0], x_train)
    # the release tarball, read in place from path=
    tar_dir = tmp_path / "dl"
    tar_dir.mkdir()
    with tarfile.open(tar_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(target, arcname="cifar-10-batches-py")
    np.testing.assert_array_equal(cifar10.load_data(path=tar_dir)[0][0], x_train)


def test_cifar10_binary_version(tmp_path, home):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    xs, ys = [], []
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        x, rows = _images(3, 10 + i)
        y = np.array([i, 9, 0])
        (folder / name).write_bytes(np.concatenate([y[:, None].astype(np.uint8), rows], axis=1).tobytes())
        xs.append(x)
        ys.append(y)
    (xt, yt), (xs_, ys_) = cifar10.load_data(path=tmp_path)
    np.testing.assert_array_equal(xt, np.concatenate(xs[:5]))
    np.testing.assert_array_equal(yt[:, 0], np.concatenate(ys[:5]))
    np.testing.assert_array_equal(xs_, xs[5])
    (folder / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a whole number of 3073-byte CIFAR records"):
        cifar10.load_data(path=tmp_path)


def test_cifar100_fine_and_coarse_python_and_binary(home, tmp_path):
    folder = home / ".keras" / "datasets" / "cifar-100-python"
    folder.mkdir(parents=True)
    expect = {}
    for i, name in enumerate(("train", "test")):
        x, rows = _images(5, 20 + i)
        fine, coarse = np.array([[0, 99, 50, 7, 3], [1, 98, 51, 8, 2]][i]), np.array([19, 0, 5, 1, 2])
        blob = pickle.dumps({b"data": rows, b"fine_labels": fine.tolist(), b"coarse_labels": coarse.tolist()}, protocol=2)
        (folder / name).write_bytes(blob)
        expect[name] = (x, fine, coarse)
    (xt, yt), (xs, ys) = cifar100.load_data()
    np.testing.assert_array_equal(xt, expect["train"][0])
    np.testing.assert_array_equal(yt[:, 0], expect["train"][1])
    np.testing.assert_array_equal(ys[:, 0], expect["test"][1])
    np.testing.assert_array_equal(cifar100.load_data("coarse")[1][1][:, 0], expect["test"][2])
    with pytest.raises(ValueError, match='label_mode must be "fine" or "coarse"'):
        cifar100.load_data("medium")
    # binary version: coarse byte, fine byte, pixels
    bindir = tmp_path / "b" / "cifar-100-binary"
    bindir.mkdir(parents=True)
    for name in ("train", "test"):
        x, fine, coarse = expect[name]
        _, rows = _images(5, 20 + (name == "test"))
        recs = np.concatenate([coarse[:, None], fine[:, None], rows], axis=1).astype(np.uint8)
        (bindir / f"{name}.bin").write_bytes(recs.tobytes())
    (xt, yt), _ = cifar100.load_data("coarse", path=tmp_path / "b")
    np.testing.assert_array_equal(xt, expect["train"][0])
    np.testing.assert_array_equal(yt[:, 0], expect["train"][2])


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_pickles_cannot_run_code(home, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10_python(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Boom(), b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match="refusing to load (posix|os).system"):
        cifar10.load_data(path=tmp_path)
    objs = np.array([1, "a"], dtype=object)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": objs, b"labels": [0, 1]}, protocol=2))
    with pytest.raises(ValueError, match="refusing a non-numeric dtype object"):
        cifar10.load_data(path=tmp_path)
    (folder / "test_batch").write_bytes(_py2_batch(np.zeros((2, 3072), np.uint8), [0, 1])[:-40])
    with pytest.raises(ValueError, match="truncated data"):
        cifar10.load_data(path=tmp_path)
    (folder / "test_batch").write_bytes(_py_batch(np.zeros((2, 5), np.uint8), [0, 1]))
    with pytest.raises(ValueError, match=r"'data' must be uint8 of shape \(N, 3072\), found uint8 \(2, 5\)"):
        cifar10.load_data(path=tmp_path)
    _, rows = _images(2, 0)
    (folder / "test_batch").write_bytes(_py_batch(rows, [0, 12]))
    with pytest.raises(ValueError, match=r"labels must be 0..9, found 0..12"):
        cifar10.load_data(path=tmp_path)


def test_cifar_missing_says_which_file_to_put_where(home):
    with pytest.raises(FileNotFoundError) as e:
        cifar10.load_data()
    msg = str(e.value)
    assert "cifar-10-python.tar.gz" in msg and "cifar-10-binary.tar.gz" in msg and "does not download" in msg
    assert os.path.join(str(home), ".keras", "datasets") in msg
    with pytest.raises(FileNotFoundError, match="cifar-100-python.tar.gz"):
        cifar100.load_data()


def _write_mnist_c(root, corruption, n=(6, 4), labels_dtype=np.int64):
    d = root / "mnist_c" / corruption
    d.mkdir(parents=True)
    out = []
    for split, k in zip(("train", "test"), n):
        x = np.random.default_rng(k).integers(0, 256, (k, 28, 28, 1), dtype=np.uint8)
        y = np.arange(k, dtype=labels_dtype) % 10
        np.save(d / f"{split}_images.npy", x)
        np.save(d / f"{split}_labels.npy", y)
        out.append((x, y))
    return out


def test_mnist_c_reads_the_release_layout(home, tmp_path):
    (x_train, y_train), (x_test, y_test) = _write_mnist_c(tmp_path, "fog")
    for path in (tmp_path, tmp_path / "mnist_c"):  # the folder or its parent
        (xt, yt), (xs, ys) = mnist_c.load_data("fog", path=path)
        np.testing.assert_array_equal(xt, x_train)
        np.testing.assert_array_equal(yt, y_train)
        np.testing.assert_array_equal(xs, x_test)
        np.testing.assert_array_equal(ys, y_test)
    _write_mnist_c(home / ".keras" / "datasets", "identity")
    assert mnist_c.load_data()[0][0].shape == (6, 28, 28, 1)


def test_mnist_c_bad_input(home, tmp_path):
    with pytest.raises(ValueError, match="corruption must be one of"):
        mnist_c.load_data("blurry")
    with pytest.raises(FileNotFoundError, match=r"train_images.npy, train_labels.npy.*mnist_c.zip"):
        mnist_c.load_data("shear", path=tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        mnist_c.load_data("shear", path=tmp_path / "missing")
    d = tmp_path / "mnist_c" / "rotate"
    _write_mnist_c(tmp_path, "rotate")
    np.save(d / "test_labels.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain numeric .npy file"):
        mnist_c.load_data("rotate", path=tmp_path)
    np.save(d / "test_labels.npy", np.arange(3))
    with pytest.raises(ValueError, match="test_images holds 4 images but test_labels 3 labels"):
        mnist_c.load_data("rotate", path=tmp_path)
    np.save(d / "test_images.npy", np.zeros((4, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"expected uint8 images of shape \(N, 28, 28, 1\), found float32"):
        mnist_c.load_data("rotate", path=tmp_path)


def test_mnist_from_keras_npz(home):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), "y_train": np.arange(5, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), "y_test": np.arange(2, dtype=np.uint8)}
    d = home / ".keras" / "datasets"
    d.mkdir(parents=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (d / "mnist.npz").write_bytes(buf.getvalue())
    (xt, yt), (xs, ys) = mnist.load_data(download=False)
    np.testing.assert_array_equal(xt, arrays["x_train"])
    np.testing.assert_array_equal(ys, arrays["y_test"])


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_data_only_pickle_reader_matches_pickle_on_plain_data(protocol):
    from fastconv.datasets import _pickled_data
    value = {b"k": [1, -2, 300, 70000, -(2 ** 40), 2 ** 70, 1.5, None, True, False], "text": "héllo",
             "t": (1, (2, 3), ()), "a": np.arange(12, dtype=">i2").reshape(3, 4),
             "f": np.asfortranarray(np.linspace(0, 1, 6).reshape(2, 3)), "u8": np.arange(5, dtype=np.uint8),
             "shared": [b"x"] * 3}
    got = _pickled_data.read(pickle.dumps(value, protocol=protocol), "test")
    want = pickle.loads(pickle.dumps(value, protocol=protocol))  # the oracle: the real unpickler
    assert set(got) == set(want)
    for k in want:
        if isinstance(want[k], np.ndarray):
            # same kind and size (numpy may hand back a big-endian array in native order)
            assert got[k].dtype.str[1:] == want[k].dtype.str[1:] and got[k].shape == want[k].shape
            np.testing.assert_array_equal(got[k], want[k])
        else:
            assert got[k] == want[k], k
