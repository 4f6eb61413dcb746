"""image_dataset_from_directory on real PNG/JPEG/BMP/GIF files written by Pillow: Keras's file
order, split, labels and pixels (committed golden data from Keras 3 / TF, made by
tests/golden/make_image_dataset_golden.py; live against Keras where installed), and bad input.

Pixel tolerances (vs Keras): nearest 0 and JPEG decoding 0 (simplejpeg with TF's DCT);
bilinear 1.0 with Pillow's resize (its fixed-point filter rounds to uint8, tf keeps float32),
1e-3 with the compiled resize kernels (tf's arithmetic in float32); grayscale 2.0 (1.0 with the
kernels): PNG's and Pillow's RGB->gray conversions round differently.
"""
import json
import os
import threading
import time
import warnings

import numpy as np
import pytest

import fastconv
import image_folder
from fastconv.data import Dataset, TensorSpec, image_dataset_from_directory
from fastconv.data import decode
from fastconv.data.decode import ImageDecodeError

pytest.importorskip("PIL")

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
TOLERANCE = {"rgb_bilinear": 1.0, "rgb_nearest_categorical": 0.0, "gray_crop": 2.0, "rgba_pad": 1.0}
KERNEL_TOLERANCE = {"rgb_bilinear": 1e-3, "rgb_nearest_categorical": 0.0, "gray_crop": 1.0, "rgba_pad": 1e-3}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    image_folder.make_tree(str(root))
    return str(root)


def _golden():
    with open(os.path.join(GOLDEN, "image_dataset.json")) as f:
        meta = json.load(f)
    with np.load(os.path.join(GOLDEN, "image_dataset.npz"), allow_pickle=False) as z:
        return meta, {k: z[k] for k in z.files}


def _kwargs(case):
    return {k: tuple(v) if k == "image_size" else v for k, v in case["kwargs"].items()}


def _rel(root, paths):
    return [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]


def _check_case(root, name, case, expected, capsys=None):
    ds = image_dataset_from_directory(root, shuffle=False, batch_size=None, **_kwargs(case))
    assert _rel(root, ds.file_paths) == case["file_paths"]
    assert ds.class_names == case["class_names"]
    xs, ys = zip(*ds)
    x, y = np.stack(xs), np.stack(ys)
    assert x.dtype == np.float32 and x.shape == expected.shape
    np.testing.assert_array_equal(y, np.asarray(case["labels"], y.dtype))
    for rel, a, b in zip(case["file_paths"], x, expected):
        tol = (KERNEL_TOLERANCE if decode._batch_kernels() is not None else TOLERANCE)[name]
        if decode._jpeg_module() is None and rel.lower().endswith((".jpg", ".jpeg")):
            tol = max(tol, 1.0) + 4.0  # Pillow's accurate DCT differs from tf's fast one by up to 4
        np.testing.assert_allclose(a, b, rtol=0, atol=tol + 1e-4, err_msg=f"{name}: {rel}")


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_matches_keras_golden(tree, name):
    meta, arrays = _golden()
    _check_case(tree, name, meta["cases"][name], arrays[name])


def test_split_order_and_messages_match_keras(tree, capsys):
    split = _golden()[0]["split"]
    capsys.readouterr()
    tr, va = image_dataset_from_directory(tree, **_kwargs(split))
    assert capsys.readouterr().out.splitlines() == split["stdout"]
    assert _rel(tree, tr.file_paths) == split["train_files"]
    assert _rel(tree, va.file_paths) == split["val_files"]
    assert (len(tr), len(va)) == (split["train_batches"], split["val_batches"])
    # the labels travel with the files, through the per-epoch shuffle too
    names = tr.class_names
    for xb, yb in tr:
        assert xb.shape[1:] == (12, 16, 3) and yb.dtype == np.int32
    seen = sorted(int(v) for _, yb in tr for v in yb)
    assert seen == sorted(names.index(p.split("/")[0]) for p in split["train_files"])
    tr2 = image_dataset_from_directory(tree, verbose=False, subset="training",
                                       **{k: v for k, v in _kwargs(split).items() if k != "subset"})
    assert tr2.file_paths == tr.file_paths


def test_live_against_keras(tmp_path):
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    image_folder.make_tree(str(tmp_path))
    meta, _ = _golden()
    for name, case in meta["cases"].items():
        ref = keras.utils.image_dataset_from_directory(str(tmp_path), shuffle=False, batch_size=None,
                                                       **_kwargs(case))
        expected = np.stack([x.numpy() for x, _ in ref])
        _check_case(str(tmp_path), name, {**case, "file_paths": _rel(str(tmp_path), ref.file_paths)}, expected)
    for seed in (1, 99):
        kw = dict(image_size=(8, 8), validation_split=0.4, subset="both", seed=seed, verbose=False)
        k_tr, k_va = keras.utils.image_dataset_from_directory(str(tmp_path), **kw)
        tr, va = image_dataset_from_directory(str(tmp_path), **kw)
        assert (tr.file_paths, va.file_paths) == (k_tr.file_paths, k_va.file_paths)


def test_label_modes_and_explicit_labels(tree):
    ds = image_dataset_from_directory(tree, image_size=(4, 4), batch_size=5, label_mode="binary",
                                      class_names=["cat", "ant"], shuffle=False, verbose=False)
    y = np.concatenate([yb for _, yb in ds])
    assert y.shape == (7, 1) and y.dtype == np.float32
    assert y[:, 0].tolist() == [0.0] * 4 + [1.0] * 3  # cat's 4 files first: class_names order
    with pytest.raises(ValueError, match="exactly 2 classes"):
        image_dataset_from_directory(tree, label_mode="binary", verbose=False)
    # explicit labels follow the sorted walk of the whole folder, hidden folders included (as
    # Keras); ".hidden/x.png" comes first and is not an image: skipped with a warning
    labels = list(range(13))[::-1]
    ds = image_dataset_from_directory(tree, labels=labels, image_size=(4, 4), shuffle=False, batch_size=13,
                                      verbose=False)
    assert _rel(tree, ds.file_paths)[0] == ".hidden/x.png"
    with pytest.warns(RuntimeWarning, match="x.png"):
        assert next(iter(ds))[1].tolist() == labels[1:]
    assert ds.class_names == [str(v) for v in range(13)]
    only_x = image_dataset_from_directory(tree, labels=None, image_size=(4, 4), batch_size=None,
                                          shuffle=False, verbose=False)
    with pytest.warns(RuntimeWarning, match="x.png"):
        first = next(iter(only_x))
    assert isinstance(first, np.ndarray) and first.shape == (4, 4, 3)
    with pytest.raises(ValueError, match="one label per image"):
        image_dataset_from_directory(tree, labels=[0, 1], verbose=False)


def test_seeded_epochs_and_pipeline_methods(tree):
    fastconv.set_seed(3)
    ds = image_dataset_from_directory(tree, image_size=(6, 6), batch_size=4, seed=5, verbose=False)
    a = [yb.tolist() for _, yb in ds]
    b = [yb.tolist() for _, yb in ds]
    assert sorted(sum(a, [])) == sorted(sum(b, [])) and len(ds) == 3
    fastconv.set_seed(3)
    again = image_dataset_from_directory(tree, image_size=(6, 6), batch_size=4, seed=5, verbose=False)
    assert [yb.tolist() for _, yb in again] == a
    assert ds.element_spec == (TensorSpec((None, 6, 6, 3), np.float32), TensorSpec((None,), np.int32))
    # the tf.data methods tutorials chain, and fit on the result
    cached = ds.cache().prefetch(2)
    first = [yb.tolist() for _, yb in cached]
    assert [yb.tolist() for _, yb in cached] == first
    model = fastconv.Sequential([fastconv.layers.Input((6, 6, 3)), fastconv.layers.Rescaling(1 / 255),
                                 fastconv.layers.Flatten(), fastconv.layers.Dense(4)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    hist = model.fit(ds.take(2), validation_data=ds.take(1), epochs=2, verbose=0)
    assert len(hist.history["val_loss"]) == 2
    assert model.predict(Dataset.from_tensor_slices(ds.as_arrays()[0]).batch(5), verbose=0).shape == (12, 4)


def _write_bad_tree(root):
    image_folder.make_tree(root)
    with open(os.path.join(root, "ant", "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    good = open(os.path.join(root, "dog", "d1.png"), "rb").read()
    with open(os.path.join(root, "dog", "truncated.png"), "wb") as f:
        f.write(good[:len(good) // 2])
    return 14


def test_corrupt_files_are_skipped_with_a_warning_or_raise(tmp_path):
    n = _write_bad_tree(str(tmp_path))
    ds = image_dataset_from_directory(str(tmp_path), image_size=(5, 5), batch_size=4, shuffle=False,
                                      verbose=False)
    assert len(ds) == 4  # len counts every indexed file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = np.concatenate([yb for _, yb in ds])
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2 and "broken.jpg" in messages[0] and "truncated.png" in messages[1]
    assert len(labels) == n - 2 and np.bincount(labels).tolist() == [3, 3, 4, 2]
    strict = image_dataset_from_directory(str(tmp_path), image_size=(5, 5), shuffle=False, verbose=False,
                                          bad_files="raise")
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        list(strict)
    with pytest.raises(ValueError, match="bad_files"):
        image_dataset_from_directory(str(tmp_path), bad_files="ignore")


@pytest.mark.parametrize("batch_size", [1, 3, 5, 16])
def test_batches_stay_full_around_skipped_files(tmp_path, batch_size):
    # 14 files, 2 unreadable: the readable 12, in file order, cut into full batches but the last
    # (the decoding threads write rows in place; after a skip the batches are cut again)
    _write_bad_tree(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ds = image_dataset_from_directory(str(tmp_path), image_size=(5, 7), batch_size=batch_size,
                                          shuffle=False, verbose=False, num_parallel_calls=2)
        batches = list(ds)
        x_all, y_all = ds.as_arrays()
    sizes = [len(xb) for xb, _ in batches]
    assert sum(sizes) == 12 and all(n == batch_size for n in sizes[:-1]) and 0 < sizes[-1] <= batch_size
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in batches]), x_all)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in batches]), y_all)
    assert all(xb.dtype == np.float32 and yb.shape == (len(xb),) for xb, yb in batches)


def test_empty_inputs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        image_dataset_from_directory(str(tmp_path / "nope"))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images found"):
        image_dataset_from_directory(str(tmp_path))
    image_folder.make_tree(str(tmp_path / "t"))
    (tmp_path / "t" / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"\['empty_class'\].*hold no images"):
        image_dataset_from_directory(str(tmp_path / "t"))
    with pytest.raises(ValueError, match="class_names"):
        image_dataset_from_directory(str(tmp_path / "t"), class_names=["ant", "zebra"])
    with pytest.raises(ValueError, match="and 0 for validation"):
        image_dataset_from_directory(str(tmp_path / "t"), class_names=["ant"], validation_split=0.1,
                                     subset="training", seed=1, verbose=False)
    with pytest.raises(ValueError, match="only one of"):
        image_dataset_from_directory(str(tmp_path / "t"), crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)
    with pytest.raises(NotImplementedError, match="gaussian"):
        image_dataset_from_directory(str(tmp_path / "t"), interpolation="gaussian")


def test_decoding_threads_end_with_the_iteration(tree):
    baseline = threading.active_count()
    ds = image_dataset_from_directory(tree, image_size=(8, 8), batch_size=2, verbose=False,
                                      num_parallel_calls=3)
    for i, _ in enumerate(ds.repeat()):
        if i == 10:
            break
    end = time.monotonic() + 5
    while threading.active_count() > baseline and time.monotonic() < end:
        time.sleep(0.02)
    assert threading.active_count() <= baseline, [t.name for t in threading.enumerate()]
