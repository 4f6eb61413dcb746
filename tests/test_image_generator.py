"""ImageDataGenerator and the image helpers (issue 19 part 4; fastconv.data.image_generator,
fastconv.data.image_utils, shims fastconv.preprocessing.image and fastconv.image).

References: Keras's own outputs stored in tests/golden/data_kernels.npz (apply_transform for
every fill mode, apply_brightness_shift, keras.ops.image.resize with crop/pad to the aspect
ratio, smart_resize, tf.image.resize_with_pad; tests/golden/make_data_kernels_golden.py), and
NumPy computations of Keras's documented semantics written out here (shifts as index moves,
flips as slicing, featurewise statistics, per-class splits).
"""
import os
import sys

import numpy as np
import pytest

import fastconv
from fastconv import image as fimage
from fastconv.data import image_utils
from fastconv.data.image_generator import apply_brightness_shift, apply_channel_shift
from fastconv.preprocessing.image import (ImageDataGenerator, array_to_img, img_to_array, load_img, save_img,
                                          smart_resize)

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "golden"))
import make_data_kernels_golden as mk  # noqa: E402

Image = pytest.importorskip("PIL.Image")
ATOL = 1e-4  # float32 results of float64 interpolation, both sides


@pytest.fixture(scope="module")
def golden():
    with np.load(os.path.join(HERE, "golden", "data_kernels.npz")) as f:
        return {k: f[k] for k in f.files}


# -- apply_transform / the augmentation arguments ----------------------------------------------
@pytest.mark.parametrize("fill_mode", mk.FILL_MODES)
def test_apply_transform_matches_keras(golden, fill_mode):
    gen = ImageDataGenerator(fill_mode=fill_mode, cval=17.0)
    for i, (theta, tx, ty, shear, zx, zy) in enumerate(mk.AFFINE_PARAMS):
        got = gen.apply_transform(golden["affine_x"], dict(theta=theta, tx=tx, ty=ty, shear=shear, zx=zx, zy=zy))
        np.testing.assert_allclose(got, golden[f"affine_{fill_mode}_{i}"], rtol=0, atol=ATOL,
                                   err_msg=f"{fill_mode} case {i}")


def test_brightness_matches_keras(golden):
    for i, b in enumerate(mk.BRIGHTNESS):
        np.testing.assert_array_equal(apply_brightness_shift(golden["bright_x"], b, False), golden[f"brightness_{i}"])
        got = ImageDataGenerator().apply_transform(golden["bright_x"], {"brightness": b})
        np.testing.assert_array_equal(got, golden[f"brightness_{i}"])
    # outside 0..255: rescaled to 0..255, brightened, mapped back (Keras's local_scale)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(2, 2, 3)
    u8 = ((x + 1) / 2 * 255).astype(np.uint8).astype(np.float32)
    want = np.clip(np.trunc(np.float32(1.5) * u8), 0, 255) / 255 * 2 - 1
    np.testing.assert_allclose(apply_brightness_shift(x, 1.5, False), want, atol=1e-6)


def test_whole_pixel_shifts_move_pixels_as_keras_does():
    x = np.random.default_rng(0).uniform(0, 1, (6, 8, 2)).astype(np.float32)
    gen = ImageDataGenerator(fill_mode="constant", cval=-1)
    # Keras: tx (the height_shift_range draw) moves columns: out[:, c] = x[:, c + tx]
    got = gen.apply_transform(x, {"tx": 2})
    np.testing.assert_allclose(got[:, :6], x[:, 2:], atol=ATOL)
    assert (got[:, 6:] == -1).all()
    got = gen.apply_transform(x, {"ty": -1})  # ty moves rows: out[r] = x[r - 1]
    np.testing.assert_allclose(got[1:], x[:-1], atol=ATOL)
    assert (got[0] == -1).all()


def test_rotation_by_90_degrees_is_a_pixel_permutation():
    x = np.random.default_rng(1).uniform(0, 1, (7, 7, 3)).astype(np.float32)
    got = ImageDataGenerator().apply_transform(x, {"theta": 90})
    # positive angle turns the picture counter-clockwise as displayed (row 0 on top)
    np.testing.assert_allclose(got, np.rot90(x, 1, axes=(0, 1)), atol=ATOL)


def test_flips_and_channel_shift():
    x = np.random.default_rng(2).uniform(10, 200, (5, 6, 3)).astype(np.float32)
    gen = ImageDataGenerator()
    np.testing.assert_array_equal(gen.apply_transform(x, {"flip_horizontal": True}), x[:, ::-1])
    np.testing.assert_array_equal(gen.apply_transform(x, {"flip_vertical": True}), x[::-1])
    got = gen.apply_transform(x, {"channel_shift_intensity": 50.0})
    np.testing.assert_allclose(got, np.clip(x + 50, x.min(), x.max()), atol=1e-5)
    np.testing.assert_allclose(apply_channel_shift(x, -500), np.full_like(x, x.min()))


def test_random_parameters_follow_keras_distributions():
    rng_draws = 400
    gen = ImageDataGenerator(rotation_range=20, width_shift_range=0.1, height_shift_range=3, shear_range=15,
                             zoom_range=(0.5, 0.8), horizontal_flip=True, brightness_range=(0.2, 0.4),
                             channel_shift_range=30)
    ps = [gen.get_random_transform((20, 30, 3), seed=s) for s in range(rng_draws)]
    theta, tx, ty = (np.array([p[k] for p in ps]) for k in ("theta", "tx", "ty"))
    assert np.abs(theta).max() <= 20 and np.abs(theta).max() > 15
    assert np.abs(ty).max() <= 0.1 * 30 and np.abs(ty).max() > 2.5      # width fraction * width
    assert set(np.unique(tx)) == {-2.0, -1.0, 0.0, 1.0, 2.0}               # int 3: whole pixels in (-3, 3)
    assert all(-15 <= p["shear"] <= 15 for p in ps)
    assert all(0.5 <= p["zx"] <= 0.8 and 0.5 <= p["zy"] <= 0.8 for p in ps)
    assert all(0.2 <= p["brightness"] <= 0.4 and abs(p["channel_shift_intensity"]) <= 30 for p in ps)
    flips = np.mean([p["flip_horizontal"] for p in ps])
    assert 0.4 < flips < 0.6 and not any(p["flip_vertical"] for p in ps)
    listed = ImageDataGenerator(width_shift_range=[2, 5])
    assert {abs(listed.get_random_transform((9, 9, 1), seed=s)["ty"]) for s in range(50)} == {2.0, 5.0}
    same = ImageDataGenerator(zoom_range=0.25).get_random_transform((4, 4, 1), seed=7)
    assert same == ImageDataGenerator(zoom_range=0.25).get_random_transform((4, 4, 1), seed=7)
    assert 0.75 <= same["zx"] <= 1.25


def test_random_transform_without_settings_is_identity():
    x = np.random.default_rng(3).uniform(0, 1, (5, 5, 1)).astype(np.float32)
    np.testing.assert_array_equal(ImageDataGenerator().random_transform(x, seed=0), x)


# -- standardize / fit -------------------------------------------------------------------------
def test_standardize_order_and_featurewise_fit():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 255, (10, 4, 5, 3)).astype(np.float32)
    gen = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True, rescale=1 / 255)
    gen.fit(x)
    xs = x.astype(np.float64) / 255
    np.testing.assert_allclose(gen.mean.ravel(), xs.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(gen.std.ravel(), (xs - xs.mean(axis=(0, 1, 2))).std(axis=(0, 1, 2)), rtol=1e-4)
    got = gen.standardize(x[0].copy())
    np.testing.assert_allclose(got, (xs[0] - gen.mean) / (gen.std + 1e-6), rtol=1e-4, atol=1e-5)

    calls = []
    sample = ImageDataGenerator(samplewise_center=True, samplewise_std_normalization=True,
                                preprocessing_function=lambda im: calls.append(im.shape) or im + 1)
    got = sample.standardize(x[1].copy())
    np.testing.assert_allclose([got.mean(), got.std()], [0, 1], atol=1e-4)
    assert calls == [(4, 5, 3)]


def test_zca_whitening_decorrelates():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((200, 2, 2, 1))
    x = (base + 0.8 * base[:, :1, :1]).astype(np.float32)  # correlated pixels
    with pytest.warns(UserWarning, match="featurewise_center"):
        gen = ImageDataGenerator(zca_whitening=True, zca_epsilon=1e-6)
    gen.fit(x)
    white = np.stack([gen.standardize(im.copy()) for im in x]).reshape(200, -1)
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(4), atol=5e-3)  # float32 data


def test_unfit_featurewise_generator_warns():
    with pytest.warns(UserWarning, match="not fit"):
        ImageDataGenerator(featurewise_center=True).standardize(np.ones((2, 2, 1), np.float32))


# -- flow ------------------------------------------------------------------------------------
def _labelled(n=20, h=6, w=5):
    x = np.repeat(np.arange(n, dtype=np.float32), h * w * 3).reshape(n, h, w, 3)  # image i holds value i
    return x, np.arange(n) % 4


def test_flow_batches_cover_each_sample_once_and_keep_y_aligned():
    x, y = _labelled()
    sw = np.linspace(0, 1, 20)
    it = ImageDataGenerator(rescale=2.0).flow(x, y, batch_size=6, shuffle=True, sample_weight=sw, seed=1)
    assert len(it) == 4
    seen = []
    for xb, yb, swb in it:
        ids = xb[:, 0, 0, 0] / 2
        np.testing.assert_array_equal(yb, ids.astype(int) % 4)
        np.testing.assert_allclose(swb, sw[ids.astype(int)])
        seen += list(ids)
    assert sorted(seen) == list(range(20)) and seen != list(range(20))  # shuffled, complete
    again = [b[0] for b in ImageDataGenerator(rescale=2.0).flow(x, y, batch_size=6, sample_weight=sw, seed=1)]
    np.testing.assert_array_equal(np.concatenate(again)[:, 0, 0, 0] / 2, seen)  # same seed, same order
    assert ImageDataGenerator().flow(x, batch_size=8, shuffle=False)[2].shape == (4, 6, 5, 3)  # x only


def test_flow_batches_do_not_depend_on_access_order():
    x = np.random.default_rng(6).uniform(0, 255, (12, 8, 8, 1)).astype(np.float32)
    gen = ImageDataGenerator(rotation_range=40, horizontal_flip=True)
    a, b = gen.flow(x, batch_size=4, seed=9), gen.flow(x, batch_size=4, seed=9)
    first = [a[i] for i in range(3)]
    np.testing.assert_array_equal(b[2], first[2])
    assert not np.array_equal(first[0], x[a.index_array[:4]])  # augmented


def test_flow_validation_split_takes_the_first_part():
    x, y = _labelled()
    gen = ImageDataGenerator(validation_split=0.25)
    val = gen.flow(x, y, batch_size=50, shuffle=False, subset="validation")
    train = gen.flow(x, y, batch_size=50, shuffle=False, subset="training")
    np.testing.assert_array_equal(val[0][0][:, 0, 0, 0], np.arange(5))
    np.testing.assert_array_equal(train[0][0][:, 0, 0, 0], np.arange(5, 20))
    with pytest.raises(ValueError, match="different classes"):
        gen.flow(x, np.arange(20) // 10, subset="training")
    assert len(gen.flow(x, np.arange(20) // 10, subset="training", ignore_class_split=True, batch_size=5)) == 3


def test_flow_save_to_dir(tmp_path):
    x, y = _labelled(4)
    it = ImageDataGenerator().flow(x, y, batch_size=4, save_to_dir=str(tmp_path), save_prefix="aug", seed=0)
    it[0]
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 4 and all(n.startswith("aug_") and n.endswith(".png") for n in names)


def test_generator_trains_a_model_with_steps_per_epoch():
    fastconv.set_seed(0)
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, (32, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean((1, 2, 3)) > x[:, 4:].mean((1, 2, 3))).astype(np.int64)
    model = fastconv.models.Sequential([fastconv.layers.Conv2D(2, 3, input_shape=(8, 8, 1)),
                                        fastconv.layers.Flatten(), fastconv.layers.Dense(2)])
    model.compile("adam", fastconv.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    gen = ImageDataGenerator(horizontal_flip=True)
    hist = model.fit(gen.flow(x, y, batch_size=8, seed=0), steps_per_epoch=3, epochs=2, verbose=0,
                     validation_data=ImageDataGenerator().flow(x, y, batch_size=16, shuffle=False))
    assert len(hist.history["loss"]) == 2 and "val_loss" in hist.history
    assert all(np.isfinite(hist.history["val_loss"]))
    # without steps_per_epoch one epoch is len(iterator) batches (the loop ends)
    hist = model.fit(gen.flow(x, y, batch_size=8, seed=0), epochs=1, verbose=0)
    assert len(hist.history["loss"]) == 1


# -- flow_from_directory ---------------------------------------------------------------------
def _image_folder(root, sizes=((10, 12), (7, 9), (12, 12)), classes=("cats", "dogs")):
    rng = np.random.default_rng(8)
    arrays = {}
    for c in classes:
        os.makedirs(root / c)
        for i, (h, w) in enumerate(sizes):
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            p = root / c / f"img{i}.png"
            Image.fromarray(a).save(p)
            arrays[str(p)] = a
    (root / "cats" / "notes.txt").write_text("not an image")
    return arrays


def test_flow_from_directory_reads_resizes_and_labels(tmp_path, capsys):
    arrays = _image_folder(tmp_path)
    it = ImageDataGenerator().flow_from_directory(tmp_path, target_size=(8, 8), batch_size=4, shuffle=False)
    assert capsys.readouterr().out == "Found 6 images belonging to 2 classes.\n"
    assert it.class_indices == {"cats": 0, "dogs": 1} and list(it.classes) == [0, 0, 0, 1, 1, 1]
    assert it.filenames[0] == os.path.join("cats", "img0.png")
    xb, yb = it[0]
    assert xb.shape == (4, 8, 8, 3) and xb.dtype == np.float32
    np.testing.assert_array_equal(yb, np.eye(2, dtype=np.float32)[[0, 0, 0, 1]])
    for k in range(4):  # Keras resizes with Pillow, nearest by default
        path = it.filepaths[k]
        want = np.asarray(Image.fromarray(arrays[path]).resize((8, 8), Image.NEAREST), np.float32)
        np.testing.assert_array_equal(xb[k], want)
    gray = ImageDataGenerator().flow_from_directory(tmp_path, (5, 6), color_mode="grayscale", class_mode="sparse",
                                                    batch_size=6, shuffle=False)
    xg, yg = gray[0]
    assert xg.shape == (6, 5, 6, 1) and yg.dtype == np.float32 and list(yg) == [0, 0, 0, 1, 1, 1]
    only_x = ImageDataGenerator().flow_from_directory(tmp_path, (4, 4), class_mode=None, classes=["dogs"])
    assert only_x[0].shape == (3, 4, 4, 3)
    xi, yi = ImageDataGenerator().flow_from_directory(tmp_path, (4, 4), class_mode="input")[0]
    np.testing.assert_array_equal(xi, yi)


def test_flow_from_directory_splits_each_class(tmp_path, capsys):
    _image_folder(tmp_path, sizes=((5, 5),) * 4)
    gen = ImageDataGenerator(validation_split=0.5, rescale=1 / 255)
    val = gen.flow_from_directory(tmp_path, (5, 5), subset="validation", shuffle=False)
    train = gen.flow_from_directory(tmp_path, (5, 5), subset="training", shuffle=False)
    assert [os.path.basename(p) for p in val.filepaths] == ["img0.png", "img1.png"] * 2
    assert [os.path.basename(p) for p in train.filepaths] == ["img2.png", "img3.png"] * 2
    assert "Found 4 images belonging to 2 classes." in capsys.readouterr().out
    assert val[0][0].max() <= 1.0


def test_flow_from_directory_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageDataGenerator().flow_from_directory(tmp_path / "nope")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageDataGenerator().flow_from_directory(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png at all")
    it = ImageDataGenerator().flow_from_directory(tmp_path, (4, 4))
    with pytest.raises(OSError, match="x.png"):
        it[0]
    with pytest.raises(ValueError, match="class_mode"):
        ImageDataGenerator().flow_from_directory(tmp_path, class_mode="onehot")
    with pytest.raises(ValueError, match="interpolation must be one of"):
        ImageDataGenerator().flow_from_directory(tmp_path, interpolation="cubic")
    with pytest.raises(ValueError, match="not sub-folders"):
        ImageDataGenerator().flow_from_directory(tmp_path, classes=["bad", "zebra"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(fill_mode="mirror"), "fill_mode must be one of"),
    (dict(zoom_range=(1, 2, 3)), "zoom_range must be a float or a pair"),
    (dict(brightness_range=0.5), "brightness_range must be a pair"),
    (dict(validation_split=1.5), "validation_split must be strictly between 0 and 1"),
    (dict(rotation_range=-5), "rotation_range must be >= 0"),
    (dict(width_shift_range="a"), "width_shift_range must be a finite number"),
    (dict(data_format="channels_first"), "channels_last"),
    (dict(interpolation_order=3), "interpolation_order must be 1"),
    (dict(preprocessing_function=3), "preprocessing_function must be callable"),
])
def test_bad_generator_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ImageDataGenerator(**kwargs)


def test_bad_flow_arguments():
    x, y = _labelled(8)
    gen = ImageDataGenerator()
    with pytest.raises(ValueError, match=r"rank-4 NHWC array \(N, H, W, C\), got shape \(8, 6\)"):
        gen.flow(np.zeros((8, 6)))
    with pytest.raises(ValueError, match="same length, got 8 and 7"):
        gen.flow(x, y[:7])
    with pytest.raises(ValueError, match="subset must be"):
        gen.flow(x, y, subset="test")
    with pytest.raises(ValueError, match="validation_split > 0"):
        gen.flow(x, y, subset="training")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        gen.flow(x, y, batch_size=0)
    with pytest.raises(IndexError, match="out of range"):
        gen.flow(x, y, batch_size=4)[2]
    with pytest.raises(ValueError, match=r"one image \(H, W, C\)"):
        gen.apply_transform(x, {})


# -- image helpers ---------------------------------------------------------------------------
def test_resize_helpers_match_keras_and_tf(golden):
    xf = golden["resize_x"].astype(np.float32)
    for h, w in mk.PAD_SIZES:
        for m in ("bilinear", "nearest"):
            np.testing.assert_allclose(fimage.resize_with_pad(xf, h, w, m), golden[f"with_pad_{m}_{h}_{w}"],
                                       atol=ATOL)
    for h, w in mk.ASPECT_SIZES:
        np.testing.assert_allclose(fimage.resize(xf, (h, w), crop_to_aspect_ratio=True),
                                   golden[f"crop_aspect_{h}_{w}"], atol=ATOL)
        np.testing.assert_allclose(fimage.resize(xf, (h, w), pad_to_aspect_ratio=True, fill_value=3.0),
                                   golden[f"pad_aspect_{h}_{w}"], atol=ATOL)
        np.testing.assert_allclose(smart_resize(xf[0], (h, w)), golden[f"smart_{h}_{w}"], atol=ATOL)
    np.testing.assert_allclose(fimage.resize(xf[0], (5, 7), "area"), golden["resize_area_5_7"][0], atol=2e-3)
    with pytest.raises(ValueError, match="only one of"):
        fimage.resize(xf, (4, 4), crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)
    with pytest.raises(ValueError, match=r"one image \(H, W, C\) or a batch"):
        fimage.resize(xf[0, 0], (4, 4))


def test_save_img_load_img_round_trip_and_atomicity(tmp_path):
    a = np.random.default_rng(9).integers(0, 256, (6, 7, 3)).astype(np.float32)
    p = tmp_path / "a.png"
    save_img(p, a, scale=False)
    img = load_img(p)
    assert img.size == (7, 6) and img.mode == "RGB"
    np.testing.assert_array_equal(img_to_array(img), a)
    gray = img_to_array(load_img(p, color_mode="grayscale", target_size=(3, 3)))
    assert gray.shape == (3, 3, 1)
    np.testing.assert_array_equal(gray[..., 0], np.asarray(Image.open(p).convert("L").resize((3, 3), Image.NEAREST)))
    cropped = load_img(p, target_size=(6, 6), keep_aspect_ratio=True)  # centred 6x6 window, no resize needed
    np.testing.assert_array_equal(img_to_array(cropped), a[:, 0:6])
    # a failing write leaves the old file and no temporary file behind
    with pytest.raises(ValueError, match="format"):
        save_img(tmp_path / "a.unknownext", a)
    with pytest.raises(Exception):
        save_img(p, a, file_format="NOSUCHFORMAT")
    np.testing.assert_array_equal(img_to_array(load_img(p)), a)
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_array_to_img_scales_like_keras():
    x = np.array([[[-1.0], [0.0]], [[1.0], [3.0]]], np.float32)
    img = array_to_img(x)
    assert img.mode == "L"
    np.testing.assert_array_equal(np.asarray(img), ((x[..., 0] + 1) / 4 * 255).astype(np.uint8))
    assert array_to_img(np.zeros((2, 2, 4))).mode == "RGBA"
    with pytest.raises(ValueError, match=r"C = 1, 3 or 4, got shape \(2, 2, 2\)"):
        array_to_img(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="channels_last"):
        img_to_array(img, data_format="channels_first")
    assert image_utils.resize(np.zeros((4, 4, 1), np.uint8), (2, 2), "nearest").dtype == np.uint8
