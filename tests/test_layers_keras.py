"""Keras layers of classic CNN course code (issue 16): preprocessing (Rescaling,
Normalization, Resizing, CenterCrop, RandomCrop, RandomContrast, RandomBrightness),
activations (LeakyReLU, ELU, PReLU), ... Each: values against NumPy formulas written here,
input and weight gradients by float64 central differences on the numpy backend, forward and
backward agreement of the numpy, cpu and (emulated) cuda backends, parameter counts as Keras
3 reports them, get_config round trips, NaN propagation and clear geometry errors."""
import warnings

import numpy as np
import pytest

import fastconv as fc
from fastconv import layers, losses, models, optimizers
from fastconv.autograd import Tensor
from fastconv.reference.gradcheck import check_grad

import cuda_emulation


def _reseed(layer):
    # Random layers built with seed= redraw the same numbers after this (fixed draws for
    # finite differences and for comparing backends).
    if hasattr(layer, "_rng"):
        layer._rng = None


# id, factory, input shape, training, input transform (into the layer's domain)
CASES = [
    ("rescaling", lambda: layers.Rescaling(0.5, offset=-1.0), (2, 3, 3, 2), False, None),
    ("rescaling_array", lambda: layers.Rescaling([1.0, 2.0], offset=[0.5, 0.0]), (2, 3, 2), False, None),
    ("normalization", lambda: layers.Normalization(mean=[1.0, -1.0], variance=[4.0, 0.25]), (2, 3, 3, 2), False, None),
    ("resize_bilinear_up", lambda: layers.Resizing(5, 7), (2, 3, 4, 2), False, None),
    ("resize_bilinear_down", lambda: layers.Resizing(2, 3), (1, 5, 7, 2), False, None),
    ("resize_nearest", lambda: layers.Resizing(5, 3, interpolation="nearest"), (1, 3, 4, 2), False, None),
    ("resize_crop_aspect", lambda: layers.Resizing(2, 4, crop_to_aspect_ratio=True), (1, 5, 5, 1), False, None),
    ("resize_bicubic", lambda: layers.Resizing(4, 7, interpolation="bicubic"), (1, 5, 3, 2), False, None),
    ("resize_area", lambda: layers.Resizing(2, 4, interpolation="area"), (1, 5, 7, 1), False, None),
    ("resize_lanczos3", lambda: layers.Resizing(6, 3, interpolation="lanczos3"), (1, 4, 7, 1), False, None),
    ("resize_pad_aspect", lambda: layers.Resizing(3, 6, pad_to_aspect_ratio=True, fill_value=0.5), (1, 4, 5, 1),
     False, None),
    ("center_crop", lambda: layers.CenterCrop(2, 3), (2, 5, 6, 2), False, None),
    ("center_crop_small", lambda: layers.CenterCrop(4, 4), (1, 3, 5, 1), False, None),
    ("random_crop_train", lambda: layers.RandomCrop(2, 3, seed=4), (2, 5, 6, 2), True, None),
    ("random_crop_infer", lambda: layers.RandomCrop(2, 3, seed=4), (2, 5, 6, 2), False, None),
    ("random_contrast", lambda: layers.RandomContrast(0.4, seed=2), (3, 3, 4, 2), True, lambda x: 100 + 40 * x),
    ("random_brightness", lambda: layers.RandomBrightness(0.1, seed=3), (3, 3, 4, 2), True, lambda x: 100 + 40 * x),
    ("leaky_relu", lambda: layers.LeakyReLU(), (3, 5), False, None),
    ("elu", lambda: layers.ELU(alpha=0.7), (3, 5), False, None),
    ("prelu", lambda: layers.PReLU(alpha_initializer="ones"), (2, 3, 4), False, None),
    ("prelu_shared", lambda: layers.PReLU(shared_axes=[1, 2]), (2, 3, 3, 2), False, None),
]
# Normalisation, noise, resampling and the transposed convolution.
RESHAPING_CASES = [
    ("layer_norm", lambda: layers.LayerNormalization(), (3, 2, 2, 4), False, None),
    ("layer_norm_axes", lambda: layers.LayerNormalization(axis=(1, 3), center=False), (2, 3, 2, 2), False, None),
    ("spatial_dropout", lambda: layers.SpatialDropout2D(0.5, seed=1), (3, 2, 2, 4), True, None),
    ("gaussian_noise_infer", lambda: layers.GaussianNoise(0.5), (3, 4), False, None),
    ("upsampling_nearest", lambda: layers.UpSampling2D((2, 3)), (2, 2, 3, 2), False, None),
    ("upsampling_bilinear", lambda: layers.UpSampling2D(2, interpolation="bilinear"), (1, 3, 2, 2), False, None),
    ("cropping", lambda: layers.Cropping2D(((1, 0), (2, 1))), (2, 4, 5, 2), False, None),
    ("convT_valid", lambda: layers.Conv2DTranspose(3, 3, activation="tanh"), (2, 3, 3, 2), False, None),
    ("convT_same_s2", lambda: layers.Conv2DTranspose(2, 3, strides=2, padding="same"), (1, 3, 4, 3), False, None),
    ("convT_k_lt_s", lambda: layers.Conv2DTranspose(2, (2, 1), strides=(3, 2)), (1, 2, 3, 2), False, None),
    ("convT_outpad", lambda: layers.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1,
                                                    use_bias=False), (1, 3, 3, 2), False, None),
    ("convT_valid_outpad_dil", lambda: layers.Conv2DTranspose(2, 2, dilation_rate=2, output_padding=0),
     (1, 3, 3, 2), False, None),
]
CASES += RESHAPING_CASES
IDS = [c[0] for c in CASES]


def _input(shape, transform, dtype):
    x = np.random.default_rng(11).standard_normal(shape)
    return (x if transform is None else transform(x)).astype(dtype)


def _weights(layer, dtype):
    # Non-trivial weights: zeros/ones initial values would hide errors.
    rng = np.random.default_rng(2)
    return [rng.uniform(0.2, 0.8, w.shape).astype(dtype) for w in layer.trainable_weights]


def _run(make, x, training, to_device=lambda a: a, to_host=lambda a: a):
    """Forward output, input gradient and trainable-weight gradients, for dy fixed by seed."""
    layer = make()
    layer.dtype = x.dtype.name
    layer.build((None,) + x.shape[1:])
    for w, v in zip(layer.trainable_weights, _weights(layer, x.dtype)):
        w.assign(to_device(v))
    _reseed(layer)
    xt = Tensor(to_device(x), requires_grad=True)
    y = layer(xt, training=training)
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(x.dtype)
    (y * Tensor(to_device(dy))).sum().backward()
    return to_host(y.data), to_host(xt.grad), [to_host(w.grad) for w in layer.trainable_weights], layer, dy


@pytest.mark.parametrize("name, make, shape, training, transform", CASES, ids=IDS)
def test_gradients_match_finite_differences(name, make, shape, training, transform, numpy_backend):
    x = _input(shape, transform, np.float64)
    _, dx, dws, layer, dy = _run(make, x, training)

    def f(xv):
        _reseed(layer)
        return float(np.sum(layer(Tensor(xv), training=training).numpy() * dy))
    check_grad(f, x, dx, rtol=1e-5, atol=1e-7, skip_kinks=True, name=f"{name}/input")
    for w, dw in zip(layer.trainable_weights, dws):
        orig = w.data.copy()

        def fw(wv, w=w):
            w.data[...] = wv
            return f(x)
        check_grad(fw, orig, dw, rtol=1e-5, atol=1e-7, skip_kinks=True, name=w.name)
        w.data[...] = orig


@pytest.mark.parametrize("name, make, shape, training, transform", CASES, ids=IDS)
def test_backends_agree_forward_and_backward(name, make, shape, training, transform, monkeypatch):
    x = _input(shape, transform, np.float32)
    with fc.backend("numpy"):
        ref = _run(make, x, training)
    with fc.backend("cpu"):
        cpu = _run(make, x, training)
    cuda_emulation.install(monkeypatch)
    from fastconv import cuda as fcuda
    with fc.backend("cuda"):
        gpu = _run(make, x, training, fcuda.to_device, cuda_emulation.host)
    for other in (cpu, gpu):
        np.testing.assert_allclose(other[0], ref[0], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(other[1], ref[1], rtol=1e-5, atol=1e-4)
        for a, b in zip(other[2], ref[2]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name, make, shape, training, transform", CASES, ids=IDS)
def test_config_round_trip_and_output_shape(name, make, shape, training, transform, numpy_backend):
    layer = make()
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    y = layer(_input(shape, transform, np.float32), training=training)
    assert tuple(layer.compute_output_shape((None,) + shape[1:]))[1:] == y.shape[1:]


@pytest.mark.parametrize("name, make, shape, training, transform", CASES, ids=IDS)
def test_nan_propagates(name, make, shape, training, transform, numpy_backend):
    x = _input(shape, transform, np.float32)
    centre = (0,) + tuple(d // 2 for d in shape[1:])  # every crop keeps the centre
    x[centre] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = make()(x, training=training).numpy()
    if name == "resize_bilinear_down":
        return  # 5 -> 2 rows samples rows 0, 1, 3, 4 only (as TensorFlow): the centre is unused
    assert np.isnan(y[0]).any(), name  # never does a NaN come out as a number
    assert not np.isnan(y[1:]).any(), name  # ... nor spreads to other samples


# -- parameter counts (as Keras 3's summary reports them) -----------------------------------
@pytest.mark.parametrize("make, in_shape, params, nontrainable", [
    # adapt()able Normalization: mean (C,) + variance (C,) + the scalar count Keras 3 keeps
    # for old files = 2 * 3 + 1, none trainable.
    (lambda: layers.Normalization(), (8, 8, 3), 7, 7),
    (lambda: layers.Normalization(mean=0.0, variance=1.0), (8, 8, 3), 0, 0),  # constants
    (lambda: layers.Rescaling(1 / 255), (8, 8, 3), 0, 0),
    (lambda: layers.Resizing(4, 4), (8, 8, 3), 0, 0),
    (lambda: layers.RandomContrast(0.1), (8, 8, 3), 0, 0),
    (lambda: layers.PReLU(), (8, 8, 3), 8 * 8 * 3, 0),         # one alpha per input element
    (lambda: layers.PReLU(shared_axes=[1, 2]), (8, 8, 3), 3, 0),  # one per channel
    (lambda: layers.LeakyReLU(), (8, 8, 3), 0, 0),
])
def test_param_counts(make, in_shape, params, nontrainable, numpy_backend):
    layer = make()
    layer.build((None,) + in_shape)
    assert layer.count_params() == params
    assert sum(int(np.prod(w.shape)) for w in layer.non_trainable_weights) == nontrainable


# -- preprocessing values ------------------------------------------------------------------
def test_rescaling_and_normalization_values(numpy_backend, rng):
    x = rng.uniform(0, 255, (4, 5, 5, 3))
    np.testing.assert_allclose(layers.Rescaling(1 / 127.5, offset=-1, dtype="float64")(x).numpy(), x / 127.5 - 1)
    n = layers.Normalization(dtype="float64")
    n.adapt(x)
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(n(x).numpy(), (x - mean) / np.sqrt(var), rtol=1e-12)
    np.testing.assert_allclose(n.mean.numpy(), mean)
    assert int(n.count.numpy()) == 4 * 5 * 5
    # A zero variance divides by epsilon (1e-7), not by zero.
    z = layers.Normalization(mean=[1.0], variance=[0.0], dtype="float64")
    np.testing.assert_allclose(z(np.array([[1.0 + 1e-7]])).numpy(), [[1.0]], rtol=1e-6)
    inv = layers.Normalization(mean=[2.0], variance=[9.0], invert=True, dtype="float64")
    np.testing.assert_allclose(inv(np.array([[1.0]])).numpy(), [[5.0]])
    with pytest.raises(ValueError, match="both mean and variance"):
        layers.Normalization(mean=1.0)


def test_normalization_weights_are_saved(numpy_backend, rng, tmp_path):
    x = rng.standard_normal((10, 3)).astype(np.float32) * 3 + 1
    m = models.Sequential([layers.Input((3,)), layers.Normalization(), layers.Dense(2)])
    m.layers[0].adapt(x)
    m.save_weights(str(tmp_path / "w.weights.npz"))
    m2 = models.Sequential([layers.Input((3,)), layers.Normalization(), layers.Dense(2)])
    m2.load_weights(str(tmp_path / "w.weights.npz"))
    np.testing.assert_allclose(m2.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)


def _tf_bilinear(x, oh, ow):
    """TensorFlow's half-pixel bilinear resize (antialias=False), element by element."""
    n, h, w, c = x.shape
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        sy = (i + 0.5) * h / oh - 0.5
        y0, y1, fy = max(int(np.floor(sy)), 0), min(int(np.ceil(sy)), h - 1), sy - np.floor(sy)
        for j in range(ow):
            sx = (j + 0.5) * w / ow - 0.5
            x0, x1, fx = max(int(np.floor(sx)), 0), min(int(np.ceil(sx)), w - 1), sx - np.floor(sx)
            top = x[:, y0, x0] + (x[:, y0, x1] - x[:, y0, x0]) * fx
            bottom = x[:, y1, x0] + (x[:, y1, x1] - x[:, y1, x0]) * fx
            out[:, i, j] = top + (bottom - top) * fy
    return out


@pytest.mark.parametrize("oh, ow", [(7, 5), (2, 3), (4, 4), (9, 2)])
def test_resizing_matches_tensorflow_formulas(oh, ow, numpy_backend, rng):
    x = rng.standard_normal((2, 4, 4, 3))
    y = layers.Resizing(oh, ow, dtype="float64")(x).numpy()
    np.testing.assert_allclose(y, _tf_bilinear(x, oh, ow), rtol=1e-12, atol=1e-12)
    near = layers.Resizing(oh, ow, interpolation="nearest", dtype="float64")(x).numpy()
    rows = np.minimum(np.floor((np.arange(oh) + 0.5) * 4 / oh), 3).astype(int)
    cols = np.minimum(np.floor((np.arange(ow) + 0.5) * 4 / ow), 3).astype(int)
    np.testing.assert_array_equal(near, x[:, rows][:, :, cols])
    # crop_to_aspect_ratio: 4x4 -> 2x4 crops the centred 2x4 rows 1..2 first.
    c = layers.Resizing(2, 4, crop_to_aspect_ratio=True, dtype="float64")(x).numpy()
    np.testing.assert_allclose(c, x[:, 1:3])
    with pytest.raises(ValueError, match="interpolation"):
        layers.Resizing(2, 2, interpolation="mitchellcubic")
    with pytest.raises(ValueError, match="height"):
        layers.Resizing(0, 2)


def test_crops(numpy_backend, rng):
    x = rng.standard_normal((3, 6, 7, 2))
    np.testing.assert_array_equal(layers.CenterCrop(3, 4, dtype="float64")(x).numpy(), x[:, 1:4, 1:5])
    rc = layers.RandomCrop(3, 4, seed=0, dtype="float64")
    # inference: the largest centred 3:4 window (6 x 7 -> 5 x 7 at row 0), resized (smart_resize)
    np.testing.assert_allclose(rc(x, training=False).numpy(), layers.Resizing(3, 4, dtype="float64")(x[:, :5]).numpy(), atol=1e-12)
    seen = set()
    for _ in range(30):
        y = rc(x, training=True).numpy()
        hits = [(t, l) for t in range(4) for l in range(4) if np.array_equal(y, x[:, t:t + 3, l:l + 4])]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) > 4  # offsets vary, within the 4 x 4 possible ones
    a = layers.RandomCrop(3, 4, seed=9)(x, training=True).numpy()
    np.testing.assert_array_equal(layers.RandomCrop(3, 4, seed=9)(x, training=True).numpy(), a)
    fc.set_seed(1)
    b = layers.RandomCrop(3, 4)(x, training=True).numpy()
    fc.set_seed(1)
    np.testing.assert_array_equal(layers.RandomCrop(3, 4)(x, training=True).numpy(), b)
    # Smaller than the target: resized to it (Keras 3), never an error or a smaller output.
    assert layers.CenterCrop(8, 8)(x).shape == (3, 8, 8, 2)


def test_random_contrast_and_brightness_values(numpy_backend, rng):
    x = rng.uniform(0, 255, (5, 4, 4, 3))
    for layer in (layers.RandomContrast(0.5), layers.RandomBrightness(0.3)):
        np.testing.assert_array_equal(layer(x, training=False).numpy(), x.astype(np.float32))  # inference: identity
    c = layers.RandomContrast(0.5, seed=3, dtype="float64")
    y = c(x, training=True).numpy()
    factors = np.random.default_rng(3).uniform(0.5, 1.5, (5, 1, 1, 1))
    m = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, np.clip((x - m) * factors + m, 0, 255), rtol=1e-12)
    b = layers.RandomBrightness((-0.2, 0.1), value_range=(0, 1), seed=4, dtype="float64")
    xs = x / 255
    delta = np.random.default_rng(4).uniform(-0.2, 0.1, (5, 1, 1, 1))
    np.testing.assert_allclose(b(xs, training=True).numpy(), np.clip(xs + delta, 0, 1), rtol=1e-12)
    with pytest.raises(ValueError, match="factor"):
        layers.RandomBrightness(1.5)
    with pytest.raises(ValueError, match="factor"):
        layers.RandomContrast(-0.1)


# -- activation layers ---------------------------------------------------------------------
def test_activation_layer_values(numpy_backend):
    x = np.array([[-3.0, -0.5, 0.0, 0.5, 800.0]])
    np.testing.assert_allclose(layers.LeakyReLU(dtype="float64")(x).numpy(), np.where(x >= 0, x, 0.3 * x))
    with pytest.warns(DeprecationWarning, match="negative_slope"):
        old = layers.LeakyReLU(alpha=0.1, dtype="float64")
    assert old.negative_slope == 0.1
    np.testing.assert_allclose(layers.ELU(0.5, dtype="float64")(x).numpy(),
                               np.where(x > 0, x, 0.5 * (np.exp(np.minimum(x, 0)) - 1)))
    p = layers.PReLU(alpha_initializer="ones", dtype="float64")
    p.build((None, 5))
    p.alpha.assign(np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    np.testing.assert_allclose(p(x).numpy(), np.where(x >= 0, x, x * [0.1, 0.2, 0.3, 0.4, 0.5]))
    # ELU's gradient stays finite for large inputs (exp is never taken of them).
    xt = Tensor(np.array([[800.0, -1.0]]), requires_grad=True)
    layers.ELU(dtype="float64")(xt).sum().backward()
    np.testing.assert_allclose(xt.grad, [[1.0, np.exp(-1.0)]])
    with pytest.raises(ValueError, match="shared_axes"):
        layers.PReLU(shared_axes=[4]).build((None, 3, 3, 2))


# -- a model that uses them ----------------------------------------------------------------
def test_small_model_with_the_new_layers_fits_one_step(any_backend, rng):
    fc.set_seed(0)
    x = rng.uniform(0, 255, (8, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    norm = layers.Normalization()
    norm.adapt(x / 255)
    model = models.Sequential([
        layers.Input((12, 12, 3)),
        layers.RandomBrightness(0.1, seed=1),
        layers.RandomContrast(0.1, seed=2),
        layers.RandomCrop(10, 10, seed=3),
        layers.Resizing(8, 8),
        layers.Rescaling(1 / 255),
        norm,
        layers.Conv2D(4, 3),
        layers.PReLU(shared_axes=[1, 2]),
        layers.Conv2D(4, 3),
        layers.LeakyReLU(),
        layers.Conv2D(4, 1),
        layers.ELU(),
        layers.Flatten(),
        layers.Dense(3),
    ])
    model.compile(optimizers.SGD(0.01), losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in model.get_weights()]
    hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    after = model.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert model.predict(x, verbose=0).shape == (8, 3)



# -- group 3 values ------------------------------------------------------------------------
@pytest.mark.parametrize("make, in_shape, params, nontrainable", [
    (lambda: layers.LayerNormalization(), (8, 8, 16), 2 * 16, 0),            # gamma + beta on C
    (lambda: layers.LayerNormalization(axis=(1, 2, 3), center=False), (4, 4, 3), 4 * 4 * 3, 0),
    (lambda: layers.Conv2DTranspose(8, 3), (7, 7, 4), 3 * 3 * 8 * 4 + 8, 0),  # kh*kw*filters*cin + filters
    (lambda: layers.Conv2DTranspose(16, (5, 3), strides=2, use_bias=False), (7, 7, 4), 5 * 3 * 16 * 4, 0),
    (lambda: layers.UpSampling2D(), (7, 7, 4), 0, 0),
    (lambda: layers.Cropping2D(1), (7, 7, 4), 0, 0),
    (lambda: layers.SpatialDropout2D(0.3), (7, 7, 4), 0, 0),
    (lambda: layers.GaussianNoise(0.3), (7, 7, 4), 0, 0),
])
def test_param_counts_3(make, in_shape, params, nontrainable, numpy_backend):
    test_param_counts(make, in_shape, params, nontrainable, None)


def test_layer_normalization_values(numpy_backend, rng):
    x = rng.standard_normal((3, 4, 5, 6)) * 3 + 2
    ln = layers.LayerNormalization(dtype="float64")
    ln.build((None, 4, 5, 6))
    g, b = rng.standard_normal(6), rng.standard_normal(6)
    ln.set_weights([g, b])
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(ln(x).numpy(), (x - m) / np.sqrt(v + 1e-3) * g + b, rtol=1e-12)
    ln2 = layers.LayerNormalization(axis=[1, 2, 3], epsilon=1e-5, dtype="float64")
    m, v = x.mean((1, 2, 3), keepdims=True), x.var((1, 2, 3), keepdims=True)
    np.testing.assert_allclose(ln2(x).numpy(), (x - m) / np.sqrt(v + 1e-5), rtol=1e-12)
    assert [tuple(w.shape) for w in ln2.weights] == [(4, 5, 6), (4, 5, 6)]


def test_spatial_dropout_and_gaussian_noise(numpy_backend, rng):
    x = rng.uniform(1, 2, (50, 3, 3, 40))
    sd = layers.SpatialDropout2D(0.25, seed=5, dtype="float64")
    np.testing.assert_array_equal(sd(x).numpy(), x)
    y = sd(x, training=True).numpy()
    dropped = y[:, 0, 0, :] == 0
    assert np.array_equal(np.broadcast_to(dropped[:, None, None, :], y.shape), y == 0)  # whole maps
    np.testing.assert_allclose(y[y != 0], (x / 0.75)[y != 0], rtol=1e-12)
    assert abs(dropped.mean() - 0.25) < 0.05
    gn = layers.GaussianNoise(0.5, seed=1, dtype="float64")
    np.testing.assert_array_equal(gn(x).numpy(), x)
    noise = gn(x, training=True).numpy() - x
    assert abs(noise.std() - 0.5) < 0.02 and abs(noise.mean()) < 0.02
    np.testing.assert_array_equal(layers.GaussianNoise(0.5, seed=1, dtype="float64")(x, training=True).numpy(),
                                  x + noise)
    with pytest.raises(ValueError, match="rate"):
        layers.SpatialDropout2D(1.0)


def test_upsampling_and_cropping(numpy_backend, rng):
    x = rng.standard_normal((2, 3, 4, 2))
    y = layers.UpSampling2D((2, 3), dtype="float64")(x).numpy()
    np.testing.assert_array_equal(y, x.repeat(2, axis=1).repeat(3, axis=2))
    yb = layers.UpSampling2D(2, interpolation="bilinear", dtype="float64")(x).numpy()
    np.testing.assert_allclose(yb, _tf_bilinear(x, 6, 8), rtol=1e-12, atol=1e-12)
    c = layers.Cropping2D(((1, 0), (1, 2)), dtype="float64")(x).numpy()
    np.testing.assert_array_equal(c, x[:, 1:, 1:2])
    np.testing.assert_array_equal(layers.Cropping2D(1, dtype="float64")(x).numpy(), x[:, 1:2, 1:3])
    with pytest.raises(ValueError, match=r"cropping2d.*\(None, 3, 4, 2\)"):
        layers.Cropping2D((2, 0)).build((None, 3, 4, 2))
    with pytest.raises(ValueError, match="Cropping2D"):
        models.Sequential([layers.Input((3, 4, 2)), layers.Cropping2D(((0, 0), (2, 2)))])
    with pytest.raises(ValueError, match="UpSampling2D.*size"):
        layers.UpSampling2D(0)


def _transposed_conv_scatter(x, w, b, s, out_hw, top, left):
    """Each input pixel adds w * x into the output window it maps to (then crop the pads)."""
    n, h, wd, cin = x.shape
    kh, kw, f, _ = w.shape
    full = np.zeros((n, (h - 1) * s[0] + kh + out_hw[0], (wd - 1) * s[1] + kw + out_hw[1], f))
    for i in range(h):
        for j in range(wd):
            full[:, i * s[0]:i * s[0] + kh, j * s[1]:j * s[1] + kw] += np.einsum("nc,abfc->nabf", x[:, i, j], w)
    return full[:, top:top + out_hw[0], left:left + out_hw[1]] + b


@pytest.mark.parametrize("kernel, strides, padding, out_pad, in_hw, out_hw", [
    ((3, 3), (1, 1), "valid", None, (4, 5), (6, 7)),      # (in - 1) * s + k
    ((3, 3), (2, 2), "valid", None, (4, 5), (9, 11)),
    ((2, 2), (3, 3), "valid", None, (4, 5), (12, 15)),    # k < s: in * s
    ((3, 3), (2, 2), "same", None, (4, 5), (8, 10)),      # in * s; TF pads 1 top, 0 bottom
    ((4, 4), (2, 2), "same", None, (3, 3), (6, 6)),
    ((3, 3), (2, 2), "same", (1, 0), (4, 4), (8, 7)),     # (in-1)*s + k - 2*(k//2) + p
    ((3, 3), (2, 2), "valid", (1, 1), (3, 3), (8, 8)),
])
def test_conv2d_transpose_matches_scatter_formula(kernel, strides, padding, out_pad, in_hw, out_hw,
                                                  any_backend, rng):
    x = rng.standard_normal((2,) + in_hw + (3,)).astype(np.float32)
    layer = layers.Conv2DTranspose(4, kernel, strides=strides, padding=padding, output_padding=out_pad)
    y = layer(x).numpy()
    assert y.shape == (2,) + out_hw + (4,) == (2,) + layer.compute_output_shape((None,) + in_hw + (3,))[1:]
    w, b = layer.get_weights()
    assert w.shape == kernel + (4, 3)  # Keras's (kh, kw, filters, input channels)
    b = rng.standard_normal(4).astype(np.float32)
    layer.set_weights([w, b])
    # TF 'same': pad_total = (in - 1) * s + k - out, top = pad_total // 2.
    t = max((in_hw[0] - 1) * strides[0] + kernel[0] - out_hw[0], 0) // 2 if padding == "same" else 0
    l = max((in_hw[1] - 1) * strides[1] + kernel[1] - out_hw[1], 0) // 2 if padding == "same" else 0
    expected = _transposed_conv_scatter(x.astype(np.float64), w.astype(np.float64), b, strides, out_hw, t, l)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_conv2d_transpose_bad_arguments():
    with pytest.raises(ValueError, match="output_padding"):
        layers.Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="filters"):
        layers.Conv2DTranspose(0, 3)
    assert layers.Convolution2DTranspose is layers.Conv2DTranspose


def test_small_model_with_the_reshaping_layers_fits_one_step(any_backend, rng):
    fc.set_seed(0)
    x = rng.standard_normal((6, 8, 8, 2)).astype(np.float32)
    y = rng.standard_normal((6, 8, 8, 1)).astype(np.float32)
    model = models.Sequential([
        layers.Input((8, 8, 2)),
        layers.GaussianNoise(0.1, seed=1),
        layers.Conv2D(4, 3, strides=2, padding="same"),        # 4 x 4
        layers.LayerNormalization(),
        layers.SpatialDropout2D(0.25, seed=2),
        layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu"),  # 8 x 8
        layers.Cropping2D(1),                                  # 6 x 6
        layers.Conv2DTranspose(3, 1),                          # on a strided view: 6 x 6
        layers.UpSampling2D(2),                                # 12 x 12
        layers.Conv2D(1, 5, strides=(2, 2), padding="valid"),  # 4 x 4
        layers.UpSampling2D(2, interpolation="bilinear"),      # 8 x 8
    ])
    model.compile(optimizers.Adam(1e-2), "mse")
    before = [w.copy() for w in model.get_weights()]
    loss = model.fit(x, y, batch_size=6, epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss)
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


# -- merge layers and Lambda (group 4) -----------------------------------------------------
MERGES = [
    ("add", layers.Add, lambda a: sum(a)),
    ("subtract", layers.Subtract, lambda a: a[0] - a[1]),
    ("multiply", layers.Multiply, lambda a: np.prod(a, axis=0)),
    ("average", layers.Average, lambda a: np.mean(a, axis=0)),
    ("maximum", layers.Maximum, lambda a: np.max(a, axis=0)),
    ("minimum", layers.Minimum, lambda a: np.min(a, axis=0)),
]
MERGE_IDS = [m[0] for m in MERGES]


def _merge_inputs(name, dtype):
    rng = np.random.default_rng(7)
    return [rng.standard_normal((2, 3, 4)).astype(dtype) for _ in range(2 if name == "subtract" else 3)]


def _merge_run(cls, xs, to_device=lambda a: a, to_host=lambda a: a):
    ts = [Tensor(to_device(x), requires_grad=True) for x in xs]
    y = cls(dtype=xs[0].dtype.name)(ts)
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(xs[0].dtype)
    (y * Tensor(to_device(dy))).sum().backward()
    return to_host(y.data), [to_host(t.grad) for t in ts], dy


@pytest.mark.parametrize("name, cls, formula", MERGES, ids=MERGE_IDS)
def test_merge_values_and_gradients(name, cls, formula, numpy_backend):
    xs = _merge_inputs(name, np.float64)
    y, grads, dy = _merge_run(cls, xs)
    np.testing.assert_allclose(y, formula(np.stack(xs)), rtol=1e-12)
    for i, g in enumerate(grads):
        def f(v, i=i):
            return float(np.sum(cls(dtype="float64")([v if j == i else x for j, x in enumerate(xs)]).numpy() * dy))
        check_grad(f, xs[i], g, rtol=1e-5, atol=1e-7, skip_kinks=True, name=f"{name}/input{i}")
    lower = getattr(layers, name)
    np.testing.assert_allclose(lower([Tensor(x) for x in xs]).numpy(), y)
    layer = cls(name=f"m_{name}")
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
    # NaN in one input: NaN out at that element (maximum/minimum included), nowhere else.
    bad = [x.copy() for x in xs]
    bad[-1][0, 0, 0] = np.nan
    out = cls(dtype="float64")(bad).numpy()
    assert np.isnan(out[0, 0, 0]) and np.isnan(out).sum() == 1


@pytest.mark.parametrize("name, cls, formula", MERGES, ids=MERGE_IDS)
def test_merge_backends_agree(name, cls, formula, monkeypatch):
    xs = _merge_inputs(name, np.float32)
    with fc.backend("numpy"):
        ref = _merge_run(cls, xs)
    with fc.backend("cpu"):
        cpu = _merge_run(cls, xs)
    cuda_emulation.install(monkeypatch)
    from fastconv import cuda as fcuda
    with fc.backend("cuda"):
        gpu = _merge_run(cls, xs, fcuda.to_device, cuda_emulation.host)
    for other in (cpu, gpu):
        np.testing.assert_allclose(other[0], ref[0], rtol=1e-6, atol=1e-6)
        for a, b in zip(other[1], ref[1]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_merge_shape_errors_and_functional_api(numpy_backend):
    a, b, c = layers.Input((4, 3)), layers.Input((4, 3)), layers.Input((4, 5))
    assert layers.subtract([a, b]).shape == (None, 4, 3)
    assert layers.Average()([a, b, a]).shape == (None, 4, 3)
    with pytest.raises(ValueError, match="exactly 2"):
        layers.Subtract()([a, b, a])
    with pytest.raises(ValueError, match=r"Maximum needs inputs of one shape.*\(None, 4, 5\)"):
        layers.Maximum()([a, c])
    with pytest.raises(ValueError, match="at least 2"):
        layers.Multiply()([a])


def test_lambda_layer(numpy_backend, rng):
    x = rng.standard_normal((3, 4))

    def double_plus(t, offset=0.0):
        return t * 2.0 + offset
    lam = layers.Lambda(double_plus, arguments={"offset": 1.0}, dtype="float64")
    np.testing.assert_allclose(lam(x).numpy(), 2 * x + 1)
    xt = Tensor(x, requires_grad=True)
    layers.Lambda(lambda t: (t * t).sum(axis=-1), dtype="float64")(xt).sum().backward()
    np.testing.assert_allclose(xt.grad, 2 * x)  # gradients flow through the function's ops
    # Output shapes: explicit, a function of the input shape, or a dry run.
    inp = layers.Input((4, 6))
    assert layers.Lambda(lambda t: t.reshape(t.shape[0], -1))(inp).shape == (None, 24)
    assert layers.Lambda(lambda t: t, output_shape=(4, 6))(inp).shape == (None, 4, 6)
    assert layers.Lambda(lambda t: t[:, :2], output_shape=lambda s: (s[0], 2, s[2]))(inp).shape == (None, 2, 6)
    # Training flag reaches a function that asks for it.
    seen = []
    layers.Lambda(lambda t, training=None: seen.append(training) or t)(x, training=True)
    assert seen == [True]
    # Config holds the function's name only: rebuilding needs the function itself.
    config = lam.get_config()
    assert config["function"] == "double_plus" and config["arguments"] == {"offset": 1.0}
    with pytest.raises(ValueError, match=r"only the name.*'double_plus'.*custom_objects"):
        layers.Lambda.from_config(config)
    again = layers.Lambda.from_config(config, custom_objects={"double_plus": double_plus})
    assert again.get_config() == config
    np.testing.assert_allclose(again(x).numpy(), lam(x).numpy())
    with pytest.raises(TypeError, match="callable"):
        layers.Lambda("x * 2")


def test_functional_model_with_merges_and_lambda_fits_one_step(any_backend, rng):
    fc.set_seed(0)
    inp = layers.Input((6, 6, 2))
    a = layers.Conv2D(3, 3, padding="same")(inp)
    b = layers.Conv2D(3, 3, padding="same")(inp)
    m = layers.average([layers.maximum([a, b]), layers.minimum([a, b]), layers.multiply([a, b])])
    m = layers.subtract([m, layers.Lambda(lambda t: t * 0.5)(a)])
    out = layers.Dense(2)(layers.Flatten()(m))
    model = models.Model(inp, out)
    model.compile(optimizers.SGD(0.01), "mse")
    x, y = rng.standard_normal((4, 6, 6, 2)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]
    assert np.isfinite(model.fit(x, y, batch_size=4, epochs=1, verbose=0).history["loss"][0])
    assert all(not np.array_equal(p, q) for p, q in zip(before, model.get_weights()))
