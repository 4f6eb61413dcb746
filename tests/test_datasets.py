"""IDX reader (good, truncated, corrupt files), data set search order and download checks,
the embedded digits set, and the real Fashion-MNIST files when they are installed."""
import gzip
import hashlib
import io
import os

import numpy as np
import pytest

from fastconv.datasets import _files, digits, fashion_mnist, mnist
from fastconv.datasets.idx import parse_idx, read_idx, write_idx


@pytest.fixture
def no_home_data(tmp_path, monkeypatch):
    """Isolate every search location: empty HOME, no FASTCONV_DATA, system directories under an
    empty root (so Debian's dataset-fashion-mnist, when installed, is not found), no network."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setattr(_files, "SYSTEM_ROOT", str(tmp_path / "sysroot"))

    def offline(url, timeout):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(_files, "_urlopen", offline)
    return tmp_path


def _fake_mnist(directory, n_train=6, n_test=4, gz=True):
    """Four small IDX files in MNIST layout; returns the arrays written."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_train, dtype=np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_test, dtype=np.uint8)]
    os.makedirs(directory, exist_ok=True)
    for base, a in zip(_files.FILES, arrays):
        write_idx(os.path.join(directory, base + (".gz" if gz else "")), a)
    return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    a = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    if dtype == np.uint8:
        a = np.arange(30, dtype=np.uint8).reshape(2, 3, 5) * 8
    p = tmp_path / f"x-idx3{suffix}"
    write_idx(p, a)
    b = read_idx(p)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)
    raw = gzip.decompress(p.read_bytes()) if suffix else p.read_bytes()
    # header bytes as the spec defines them: 0 0 code ndim, then big-endian dims
    assert raw[2:4] == bytes([{np.uint8: 8, np.int8: 9, np.int16: 11, np.int32: 12,
                               np.float32: 13, np.float64: 14}[dtype], 3])
    assert raw[4:16] == b"\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x05"


def test_idx_multibyte_is_big_endian(tmp_path):
    p = tmp_path / "i.idx"
    p.write_bytes(b"\x00\x00\x0c\x01\x00\x00\x00\x02" + b"\x00\x00\x01\x00" + b"\xff\xff\xff\xfe")
    np.testing.assert_array_equal(read_idx(p), np.array([256, -2], np.int32))


def _good_bytes():
    return b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(range(6))


@pytest.mark.parametrize("data, match", [
    (b"\x00\x00", "shorter than the 4-byte magic"),
    (b"\x01\x00\x08\x02" + _good_bytes()[4:], "magic number"),
    (b"\x00\x00\x07\x02" + _good_bytes()[4:], "dtype code 0x07"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (_good_bytes()[:10], "truncated IDX header"),
    (_good_bytes()[:-1], r"payload truncated: shape \(2, 3\)"),
    (_good_bytes() + b"\x00", "trailing bytes"),
])
def test_idx_rejects_bad_files_naming_them(tmp_path, data, match):
    p = tmp_path / "bad-idx"
    p.write_bytes(data)
    with pytest.raises(ValueError, match=match) as e:
        read_idx(p)
    assert str(p) in str(e.value)


def test_truncated_and_corrupt_gzip(tmp_path):
    blob = gzip.compress(_good_bytes() * 1)
    p = tmp_path / "cut.gz"
    p.write_bytes(blob[: len(blob) - 6])
    with pytest.raises(ValueError, match="corrupt or truncated gzip") as e:
        read_idx(p)
    assert str(p) in str(e.value)
    q = tmp_path / "flip.gz"
    q.write_bytes(blob[:12] + bytes(b ^ 0xFF for b in blob[12:20]) + blob[20:])
    with pytest.raises(ValueError, match="flip.gz"):
        read_idx(q)


def test_write_idx_rejects_unknown_dtype(tmp_path):
    with pytest.raises(TypeError, match="uint16"):
        write_idx(tmp_path / "a", np.zeros(3, np.uint16))


def test_explicit_path_loads_like_keras(no_home_data):
    d = no_home_data / "explicit"
    want = _fake_mnist(d)
    spec = _small_spec()
    (x, y), (xt, yt) = _files.load(spec, path=d, download_if_missing=False)
    for got, exp in zip((x, y, xt, yt), want):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, exp)


def _small_spec(**kw):
    args = dict(name="fake-mnist", mirrors=("https://example.invalid/",), sha256={},
                shapes=((6, 28, 28), (6,), (4, 28, 28), (4,)), debian_package="dataset-fake")
    args.update(kw)
    return _files.Spec(**args)


def test_search_order_env_before_home(no_home_data, monkeypatch):
    env_dir = no_home_data / "envdata"
    home_dir = no_home_data / "home" / ".fastconv" / "datasets" / "fake-mnist"
    env_arrays = _fake_mnist(env_dir / "fake-mnist", gz=False)  # $FASTCONV_DATA/<name>, raw files
    _fake_mnist(home_dir)
    spec = _small_spec()
    monkeypatch.setenv("FASTCONV_DATA", str(env_dir))
    (x, _), _ = _files.load(spec, download_if_missing=False)
    np.testing.assert_array_equal(x, env_arrays[0])
    monkeypatch.delenv("FASTCONV_DATA")
    assert _files.find_files(spec)[0].startswith(str(home_dir))
    # an explicit path beats both
    expl = no_home_data / "expl"
    _fake_mnist(expl)
    assert _files.find_files(spec, expl)[0].startswith(str(expl))


def test_missing_files_error_says_where_and_names_debian_package(no_home_data):
    with pytest.raises(FileNotFoundError) as e:
        fashion_mnist.load_data()
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert os.path.join(str(no_home_data), "home", ".fastconv", "datasets", "fashion-mnist") in msg
    # the system directory, as rerooted by the fixture
    assert os.path.join(str(no_home_data), "sysroot", "usr", "share", "datasets", "fashion-mnist") in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "network disabled in tests" in msg
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        mnist.load_data(path=no_home_data / "nope")


def test_system_dirs_are_searched_last(no_home_data):
    spec = _small_spec(system_dirs=("/usr/share/datasets/fake-mnist",))
    assert _files.search_dirs(spec)[-1] == str(no_home_data / "sysroot/usr/share/datasets/fake-mnist")
    sys_arrays = _fake_mnist(no_home_data / "sysroot/usr/share/datasets/fake-mnist")
    (x, _), _ = _files.load(spec, download_if_missing=False)
    np.testing.assert_array_equal(x, sys_arrays[0])
    home_dir = no_home_data / "home" / ".keras" / "datasets" / "fake-mnist"
    _fake_mnist(home_dir)
    assert _files.find_files(spec)[0].startswith(str(home_dir))  # home beats system


def test_real_system_dir_is_the_debian_location():
    # with the real root the rerooting is the identity; Debian installs the files here
    assert _files.SYSTEM_ROOT == os.sep
    assert _files.system_dirs(fashion_mnist.SPEC) == ["/usr/share/datasets/fashion-mnist"]
    assert fashion_mnist.SPEC.debian_package == "dataset-fashion-mnist"


def test_wrong_shape_file_is_rejected(no_home_data):
    d = no_home_data / "d"
    _fake_mnist(d)
    spec = _small_spec(shapes=((7, 28, 28), (7,), (4, 28, 28), (4,)))
    with pytest.raises(ValueError, match=r"expected uint8 array of shape \(7, 28, 28\)"):
        _files.load(spec, path=d)


class _Resp(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def test_download_verifies_sha256(no_home_data, monkeypatch):
    src = no_home_data / "server"
    want = _fake_mnist(src)
    blobs = {b: (src / (b + ".gz")).read_bytes() for b in _files.FILES}
    good = {b: (None, hashlib.sha256(gzip.decompress(v)).hexdigest()) for b, v in blobs.items()}
    served = []

    def serve(url, timeout):
        served.append(url)
        return _Resp(blobs[url.rsplit("/", 1)[1][:-3]])
    monkeypatch.setattr(_files, "_urlopen", serve)

    bad = dict(good, **{"t10k-images-idx3-ubyte": ("0" * 64, "0" * 64)})
    with pytest.raises(FileNotFoundError, match="SHA-256 mismatch for t10k-images"):
        _files.load(_small_spec(sha256=bad))
    dest = no_home_data / "home" / ".fastconv" / "datasets" / "fake-mnist"
    assert not (dest / "t10k-images-idx3-ubyte.gz").exists()  # a bad download is not kept
    assert not list(dest.glob("*.part"))

    (x, y), (xt, yt) = _files.load(_small_spec(sha256=good))
    np.testing.assert_array_equal(xt, want[2])
    assert sorted(p.name for p in dest.iterdir()) == sorted(b + ".gz" for b in _files.FILES)
    n = len(served)
    _files.load(_small_spec(sha256=good))  # now found locally: nothing fetched again
    assert len(served) == n


def test_digits_shapes_range_and_determinism():
    (x, y), (xt, yt) = digits.load_data()
    assert x.shape == (1438, 8, 8) and xt.shape == (359, 8, 8)
    assert x.dtype == np.uint8 and y.dtype == np.uint8
    assert int(min(x.min(), xt.min())) == 0 and int(max(x.max(), xt.max())) == 255
    assert set(np.unique(np.concatenate([y, yt]))) == set(range(10))
    # each class holds about a tenth of the 1,797 images (174..183 in the UCI file)
    counts = np.bincount(np.concatenate([y, yt]), minlength=10)
    assert counts.min() >= 170 and counts.max() <= 185
    (x2, y2), (xt2, yt2) = digits.load_data()
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(yt, yt2)
    (x3, _), _ = digits.load_data(seed=1)
    assert not np.array_equal(x, x3)
    (xa, _), (xb, _) = digits.load_data(test_split=0.0)
    assert xa.shape == (1797, 8, 8) and xb.shape == (0, 8, 8)


def test_digits_upscaled_preserves_content():
    (x8, y8), _ = digits.load_data()
    (x28, y28), _ = digits.load_data(upscale_to=28)
    assert x28.shape == (1438, 28, 28) and x28.dtype == np.uint8
    np.testing.assert_array_equal(y8, y28)
    # a constant image stays constant, and block means of the upscaled image track the original
    assert np.all(digits.upscale(np.full((1, 8, 8), 77, np.uint8), 28) == 77)
    small = digits.upscale(x28[:50], 8).astype(float)
    assert np.abs(small - x8[:50]).mean() < 20
    with pytest.raises(ValueError, match="upscale_to"):
        digits.load_data(upscale_to=4)
    with pytest.raises(ValueError, match="test_split"):
        digits.load_data(test_split=1.0)


def test_real_fashion_mnist_if_installed():
    if not fashion_mnist.available():
        pytest.skip("Fashion-MNIST files not found (apt-get install dataset-fashion-mnist or set FASTCONV_DATA)")
    (x, y), (xt, yt) = fashion_mnist.load_data(download=False)
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.uint8
    # the published first training labels, and balanced classes (6,000 / 1,000 each)
    np.testing.assert_array_equal(y[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    assert np.all(np.bincount(y) == 6000) and np.all(np.bincount(yt) == 1000)
