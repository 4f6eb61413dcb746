"""BatchLoader (order, seeding, remainder, prefetch) and image_dataset_from_directory."""
import os

import numpy as np
import pytest

import fastconv
from fastconv.data import BatchLoader, image_dataset_from_directory
from fastconv.data.image_dataset import index_directory


def _collect(loader):
    return [(xb.copy(), None if yb is None else yb.copy()) for xb, yb in loader]


@pytest.mark.parametrize("prefetch", [False, True])
def test_batches_cover_every_sample_once(prefetch):
    x = np.arange(23)[:, None] * np.ones((1, 3))
    y = np.arange(23)
    fastconv.set_seed(5)
    batches = _collect(BatchLoader(x, y, batch_size=5, shuffle=True, prefetch=prefetch))
    assert [len(b[0]) for b in batches] == [5, 5, 5, 5, 3]  # the partial batch comes last
    ys = np.concatenate([b[1] for b in batches])
    assert sorted(ys.tolist()) == list(range(23)) and ys.tolist() != list(range(23))
    for xb, yb in batches:  # x and y rows stay paired
        np.testing.assert_array_equal(xb[:, 0], yb)


def test_drop_remainder_and_len():
    x = np.zeros((23, 2))
    loader = BatchLoader(x, None, batch_size=5, drop_remainder=True)
    batches = _collect(loader)
    assert len(loader) == 4 and [len(b[0]) for b in batches] == [5] * 4
    assert all(yb is None for _, yb in batches)
    assert len(BatchLoader(x, None, batch_size=5)) == 5
    assert len(BatchLoader(x, None, batch_size=50, drop_remainder=True)) == 0


def test_shuffle_is_seeded_and_changes_per_epoch():
    x = np.arange(40)
    fastconv.set_seed(3)
    loader = BatchLoader(x, x, batch_size=8)
    e1 = np.concatenate([yb for _, yb in loader])
    e2 = np.concatenate([yb for _, yb in loader])
    assert not np.array_equal(e1, e2)  # a new permutation every epoch
    fastconv.set_seed(3)
    loader = BatchLoader(x, x, batch_size=8, prefetch=True)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in loader]), e1)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in loader]), e2)


def test_no_shuffle_keeps_order_and_transform_applies():
    x = np.arange(10, dtype=np.float32)
    out = _collect(BatchLoader(x, x, batch_size=4, shuffle=False, prefetch=True,
                               transform=lambda a, b: (a * 2, b)))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in out]), x * 2)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in out]), x)


def test_prefetch_propagates_errors_and_can_stop_early():
    def boom(a, b):
        if a[0] >= 4:
            raise RuntimeError("bad batch")
        return a, b
    it = iter(BatchLoader(np.arange(12), None, batch_size=4, shuffle=False, prefetch=True, transform=boom))
    next(it)
    with pytest.raises(RuntimeError, match="bad batch"):
        next(it)
    it = iter(BatchLoader(np.arange(1000), None, batch_size=1, shuffle=False, prefetch=True))
    next(it)
    it.close()
    it._thread.join(timeout=2)
    assert not it._thread.is_alive()


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=np.zeros(5), y=np.zeros(4)), r"same number of samples.*\(5,\).*\(4,\)"),
    (dict(x=np.zeros(5), batch_size=0), "batch_size must be a positive int"),
    (dict(x=np.float32(1)), "batch dimension"),
])
def test_loader_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchLoader(**kwargs)


def _make_tree(root, counts=(("cats", 3), ("dogs", 5), ("ants", 2)), size=(6, 9)):
    """Tiny class folders; pixel value encodes the class index so labels can be checked."""
    from PIL import Image
    names = sorted(n for n, _ in counts)
    for name, k in counts:
        os.makedirs(root / name, exist_ok=True)
        for i in range(k):
            v = 40 * (names.index(name) + 1)
            a = np.full(size + (3,), v, np.uint8)
            a[0, 0] = (i, 0, 0)
            Image.fromarray(a).save(root / name / f"img{i}.png")
        (root / name / "notes.txt").write_text("not an image")
    return names


def test_index_directory_without_pillow(tmp_path):
    for name, k in (("b", 2), ("a", 1)):
        (tmp_path / name).mkdir()
        for i in range(k):
            (tmp_path / name / f"{i}.JPG").write_bytes(b"")
        (tmp_path / name / "skip.txt").write_bytes(b"")
    paths, labels, names = index_directory(tmp_path)
    assert names == ["a", "b"] and labels.tolist() == [0, 1, 1]
    assert [os.path.basename(p) for p in paths] == ["0.JPG", "0.JPG", "1.JPG"]
    with pytest.raises(FileNotFoundError, match="nope"):
        index_directory(tmp_path / "nope")


def test_image_dataset_from_directory(tmp_path):
    pytest.importorskip("PIL")
    names = _make_tree(tmp_path)
    ds = image_dataset_from_directory(tmp_path, image_size=(4, 5), batch_size=4, seed=1)
    assert ds.class_names == names == ["ants", "cats", "dogs"]
    batches = list(ds)
    assert [len(xb) for xb, _ in batches] == [4, 4, 2] and len(ds) == 3
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert x.shape == (10, 4, 5, 3) and x.dtype == np.float32 and y.dtype == np.int32
    # labels agree with the class encoded in the pixels (constant areas survive resizing)
    np.testing.assert_allclose(x[:, 2, 2, 1], 40 * (y + 1))
    assert np.bincount(y).tolist() == [2, 3, 5]

    gray = image_dataset_from_directory(tmp_path, image_size=(6, 9), color_mode="grayscale",
                                        label_mode="categorical", batch_size=None, shuffle=False)
    xg, yg = next(iter(gray))
    assert xg.shape == (6, 9, 1) and yg.tolist() == [1.0, 0.0, 0.0]


def test_validation_split_is_disjoint_and_seeded(tmp_path):
    pytest.importorskip("PIL")
    _make_tree(tmp_path)
    tr, va = image_dataset_from_directory(tmp_path, image_size=(6, 9), validation_split=0.3,
                                          subset="both", seed=7)
    assert len(tr.file_paths) == 7 and len(va.file_paths) == 3
    assert not set(tr.file_paths) & set(va.file_paths)
    va2 = image_dataset_from_directory(tmp_path, image_size=(6, 9), validation_split=0.3,
                                       subset="validation", seed=7)
    assert va2.file_paths == va.file_paths
    with pytest.raises(ValueError, match="needs a seed"):
        image_dataset_from_directory(tmp_path, validation_split=0.3, subset="training")
    with pytest.raises(ValueError, match="color_mode"):
        image_dataset_from_directory(tmp_path, color_mode="cmyk")


def test_missing_pillow_message(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_pil(name, *a, **k):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(ImportError, match="pip install Pillow"):
        image_dataset_from_directory("/nonexistent")
