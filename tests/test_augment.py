"""Augmentation invariants: shapes, identity at zero strength, exact geometry, seeding."""
import numpy as np
import pytest

import fastconv
from fastconv import augment as A
from fastconv.data import BatchLoader


@pytest.fixture
def x():
    return np.random.default_rng(0).random((6, 7, 9, 2)).astype(np.float32)


class _Max:
    """A stand-in Generator whose uniform draws are the top of the range (fixed geometry)."""
    def uniform(self, lo, hi, n):
        return np.full(n, float(hi))


def test_zero_strength_is_identity(x):
    rng = np.random.default_rng(1)
    for out in (A.random_shift(x, rng, 0), A.random_brightness(x, rng, 0.0),
                A.random_affine(x, rng, 0.0, 0.0), A.random_flip(x, rng, p=0.0),
                A.random_crop_with_padding(x, rng, 0), A.Augment(seed=0)(x)[0]):
        assert out.shape == x.shape and out.dtype == x.dtype
        np.testing.assert_array_equal(out, x)
        assert out is not x


def test_flip_always_mirrors(x):
    out = A.random_flip(x, np.random.default_rng(0), horizontal=True, vertical=True, p=1.0)
    np.testing.assert_array_equal(out, x[:, ::-1, ::-1])


def test_shift_matches_loop_reference(x):
    out = A.random_shift(x, np.random.default_rng(5), (2, 3), fill=-1.0)
    rng = np.random.default_rng(5)
    sy, sx = rng.integers(-2, 3, len(x)), rng.integers(-3, 4, len(x))
    assert len(set(zip(sy, sx))) > 1
    for i in range(len(x)):
        ref = np.full_like(x[i], -1.0)
        h, w = x.shape[1:3]
        for r in range(h):
            for c in range(w):
                if 0 <= r - sy[i] < h and 0 <= c - sx[i] < w:
                    ref[r, c] = x[i, r - sy[i], c - sx[i]]
        np.testing.assert_array_equal(out[i], ref)


def test_crop_with_padding_keeps_pixels_or_zero(x):
    out = A.random_crop_with_padding(x, np.random.default_rng(2), padding=2)
    assert out.shape == x.shape
    assert np.isin(out, np.concatenate([x.ravel(), [0.0]])).all()


def test_brightness_is_one_clipped_offset_per_image(x):
    out = A.random_brightness(x, np.random.default_rng(3), 0.2)
    assert out.min() >= 0 and out.max() <= 1
    for i in range(len(x)):
        inside = (out[i] > 0) & (out[i] < 1)
        d = out[i][inside] - x[i][inside]
        assert np.ptp(d) < 1e-6 and abs(d[0]) <= 0.2 + 1e-6


def test_rotation_90_and_zoom_geometry():
    x = np.random.default_rng(0).random((2, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(A.random_affine(x, _Max(), rotation=90), np.rot90(x, 1, axes=(1, 2)),
                               atol=1e-6)
    z = A.random_affine(x, _Max(), zoom=0.5)  # factor 1.5: the centre stays, edges come inwards
    np.testing.assert_allclose(z[:, 2, 2], x[:, 2, 2], atol=1e-6)
    np.testing.assert_allclose(z[:, 2, 0], (x[:, 2, 0] + 2 * x[:, 2, 1]) / 3, atol=1e-6)


def test_seeded_and_different_per_seed(x):
    kw = dict(horizontal_flip=True, rotation=15, zoom=0.1, shift=2, brightness=0.1)
    a, b, c = A.Augment(seed=4, **kw)(x)[0], A.Augment(seed=4, **kw)(x)[0], A.Augment(seed=5, **kw)(x)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    fastconv.set_seed(9)
    d = A.Augment(**kw)(x)[0]
    fastconv.set_seed(9)
    np.testing.assert_array_equal(A.Augment(**kw)(x)[0], d)


def test_as_loader_transform(x):
    y = np.arange(len(x))
    loader = BatchLoader(x, y, batch_size=4, shuffle=False, transform=A.Augment(horizontal_flip=True, seed=0))
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 7, 9, 2) and yb.tolist() == [0, 1, 2, 3]
    for i in range(4):  # each image is itself or its mirror, labels untouched
        assert np.array_equal(xb[i], x[i]) or np.array_equal(xb[i], x[i, :, ::-1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="NHWC"):
        A.random_flip(np.zeros((3, 3)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="zoom"):
        A.Augment(zoom=1.5)
    with pytest.raises(ValueError, match="shift"):
        A.Augment(shift=1.5)


def test_affine_translation_is_an_integer_shift_when_integral():
    x = np.random.default_rng(0).random((2, 6, 6, 1)).astype(np.float32)
    out = A.affine(x, np.zeros(2), np.ones(2), np.array([[1, 0], [0, -2]]))
    np.testing.assert_allclose(out[0, 1:], x[0, :-1], atol=1e-6)   # down by one row
    assert np.all(out[0, 0] == 0)
    np.testing.assert_allclose(out[1, :, :-2], x[1, :, 2:], atol=1e-6)  # left by two columns


def test_preprocessing_layers_augment_unless_told_otherwise():
    # Keras 3: a direct call (no training argument, no fit/predict around it) augments;
    # training=False, and predict, give the input back.
    P = pytest.importorskip("fastconv.preprocessing", reason="layers/autograd not merged yet")
    x = np.random.default_rng(0).random((4, 6, 6, 2)).astype(np.float32)
    for layer in (P.RandomFlip("horizontal", seed=0), P.RandomRotation(0.1, seed=0),
                  P.RandomZoom(0.2, seed=0), P.RandomTranslation(0.2, 0.2, seed=0)):
        np.testing.assert_array_equal(np.asarray(layer(x, training=False).numpy()), x)
        x16 = np.concatenate([x] * 4)  # 16 images: some flip, whatever the draws
        for y in (layer(x16, training=True).numpy(), layer(x16).numpy()):
            assert y.shape == x16.shape and not np.array_equal(y, x16), type(layer).__name__
    flipped = P.RandomFlip("horizontal", seed=1)(x, training=True).numpy()
    for i in range(4):
        assert np.array_equal(flipped[i], x[i]) or np.array_equal(flipped[i], x[i, :, ::-1])
    a = P.RandomRotation(0.1, seed=3)(x, training=True).numpy()
    np.testing.assert_array_equal(a, P.RandomRotation(0.1, seed=3)(x, training=True).numpy())


def test_augmentation_default_reaches_layers_inside_models():
    """An unset training mode passes through Sequential and functional models as unset, so the
    augmentation layers inside augment (the Keras 3 guide's `ds.map(lambda x, y: (aug(x), y))`);
    Dropout keeps its inference default; predict and training=False never augment."""
    import fastconv as keras
    from fastconv import layers
    x = np.random.default_rng(1).random((3, 8, 8, 1)).astype(np.float32)
    seq = keras.Sequential([layers.RandomRotation((0.2, 0.2)), layers.Dropout(0.5)])
    y = seq(x).numpy()
    rotated = layers.RandomRotation((0.2, 0.2))(x).numpy()
    np.testing.assert_allclose(y, rotated, atol=1e-6)   # rotated, and no dropout applied
    np.testing.assert_array_equal(seq(x, training=False).numpy(), x)
    inp = keras.Input((8, 8, 1))
    model = keras.Model(inp, layers.RandomRotation((0.2, 0.2))(inp))
    np.testing.assert_allclose(model(x).numpy(), rotated, atol=1e-6)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


def _affine_loop_reference(x, theta, scale, shift, fill):
    """affine's definition, one output pixel at a time: the source position by the inverse map
    about the centre, bilinear taps, a tap outside the image reads `fill`."""
    n, h, w, c = x.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    out = np.empty(x.shape, np.float64)

    def tap(b, r, col):
        return x[b, r, col].astype(np.float64) if 0 <= r < h and 0 <= col < w else np.full(c, fill)
    for b in range(n):
        cos, sin = np.cos(theta[b]) / scale[b], np.sin(theta[b]) / scale[b]
        for i in range(h):
            for j in range(w):
                yy, xx = i - cy - shift[b][0], j - cx - shift[b][1]
                sy, sx = cos * yy + sin * xx + cy, -sin * yy + cos * xx + cx
                r0, c0 = int(np.floor(sy)), int(np.floor(sx))
                fy, fx = sy - r0, sx - c0
                out[b, i, j] = ((1 - fy) * ((1 - fx) * tap(b, r0, c0) + fx * tap(b, r0, c0 + 1))
                                + fy * ((1 - fx) * tap(b, r0 + 1, c0) + fx * tap(b, r0 + 1, c0 + 1)))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_affine_matches_per_pixel_reference(dtype):
    # rotations, zooms in and out and sub-pixel shifts, so that positions fall inside, in the
    # one-pixel band where the image blends with fill, and far outside
    rng = np.random.default_rng(5)
    x = (rng.random((5, 7, 9, 2)) * 255).astype(dtype)
    theta = np.array([0.0, 0.3, -1.2, 2.5, 0.7])
    scale = np.array([1.0, 0.6, 1.7, 0.9, 1.1])
    shift = np.array([[0.0, 0.0], [0.5, -1.25], [2.0, 0.3], [-0.7, 3.1], [0.0, 0.0]])
    got = A.affine(x, theta, scale, shift, fill=7.0)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, _affine_loop_reference(x, theta, scale, shift, 7.0), rtol=1e-5, atol=1e-3)
