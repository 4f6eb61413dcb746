"""Keras 3 semantics of the warping preprocessing layers (RandomRotation, RandomZoom,
RandomTranslation: fill_mode, interpolation, fill_value and their defaults) and of Resizing's
crop/pad_to_aspect_ratio.

References: (1) tests/golden/preprocessing_layers.npz, Keras 3.15 layers at fixed transforms (a
factor pair (a, a) draws exactly a) on the torch backend (tests/golden/make_preprocessing_golden.py;
recomputed live on other inputs with the tensorflow and torch backends when FASTCONV_PEER_PYTHON
names a Python with Keras 3); (2) direct NumPy computations of the warp kernel's "grid-" modes
(np.roll, np.pad); (3) the NumPy twin of the compiled kernel. Tolerance: 1e-3 on values in
[0, 255] (float64 coordinates here, float32 in Keras: the largest difference seen is 3e-4).
"""
import functools
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

from fastconv import layers
from fastconv.data import kernels as K

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "golden"))
import make_preprocessing_golden as mk  # noqa: E402

GOLDEN = os.path.join(HERE, "golden", "preprocessing_layers.npz")
ATOL = 1e-3
IMPLS = ["numpy"] + (["cython"] if K.compiled_available() else [])


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(params=IMPLS)
def impl(request, monkeypatch):
    monkeypatch.setattr(K, "warp_affine", functools.partial(K.warp_affine, implementation=request.param))
    return request.param


def _check_against(ref, skip_modes=()):
    x = ref["x"]
    for layer, name, args in mk.CASES:
        for mode in mk.FILL_MODES:
            if mode in skip_modes:
                continue
            for interp in mk.INTERPOLATIONS:
                lay = getattr(layers, layer)(**args, fill_mode=mode, interpolation=interp,
                                             fill_value=mk.FILL_VALUE, seed=1)
                np.testing.assert_allclose(lay(x, training=True).numpy(), ref[f"{name}_{mode}_{interp}"],
                                           rtol=0, atol=ATOL, err_msg=f"{name} {mode} {interp}")


def _check_resizing(ref):
    x = ref["x"]
    for h, w in mk.RESIZE_CASES:
        for interp in mk.INTERPOLATIONS:
            crop = layers.Resizing(h, w, interpolation=interp, crop_to_aspect_ratio=True)(x).numpy()
            np.testing.assert_allclose(crop, ref[f"resize_crop_{h}_{w}_{interp}"], rtol=0, atol=ATOL)
            pad = layers.Resizing(h, w, interpolation=interp, pad_to_aspect_ratio=True,
                                  fill_value=mk.FILL_VALUE)(x).numpy()
            np.testing.assert_allclose(pad, ref[f"resize_pad_{h}_{w}_{interp}"], rtol=0, atol=ATOL,
                                       err_msg=f"pad {h}x{w} {interp}")


def _check_tf_resize(ref):
    x = ref["x"]
    for h, w in mk.TF_RESIZE_CASES:
        for method in mk.TF_RESIZE_METHODS:
            got = layers.Resizing(h, w, interpolation=method)(x).numpy()
            # float32 sums in another order than TF's (bicubic is bit for bit here)
            np.testing.assert_allclose(got, ref[f"tf_resize_{method}_{h}_{w}"], rtol=0,
                                       atol=ATOL if method != "area" else 2e-3,
                                       err_msg=f"{method} {h}x{w}")


def test_resizing_bicubic_and_area_match_tensorflow_golden(golden):
    _check_tf_resize(golden)


def test_warping_layers_match_keras3_golden(golden, impl):
    _check_against(golden)


def test_resizing_aspect_ratio_matches_keras3_golden(golden):
    _check_resizing(golden)


def test_defaults_are_keras3s():
    for cls in (layers.RandomRotation, layers.RandomZoom, layers.RandomTranslation):
        params = inspect.signature(cls).parameters
        assert (params["fill_mode"].default, params["interpolation"].default, params["fill_value"].default) == \
            ("reflect", "bilinear", 0.0), cls.__name__
    params = inspect.signature(layers.Resizing).parameters
    assert {k: params[k].default for k in ("interpolation", "crop_to_aspect_ratio", "pad_to_aspect_ratio",
                                           "fill_mode", "fill_value", "antialias")} == \
        dict(interpolation="bilinear", crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
             fill_mode="constant", fill_value=0.0, antialias=False)
    assert inspect.signature(layers.RandomFlip).parameters["mode"].default == "horizontal_and_vertical"
    for cls in (layers.RandomContrast, layers.RandomBrightness):
        assert inspect.signature(cls).parameters["value_range"].default == (0, 255)
    # the default fill is a reflection: a shift by one row repeats the first row (d c b a | a b c d)
    x = np.arange(12, dtype=np.float32).reshape(1, 4, 3, 1)
    y = layers.RandomTranslation((0.25, 0.25), (0, 0))(x, training=True).numpy()
    np.testing.assert_array_equal(y[0, :, :, 0], np.concatenate([x[0, :1], x[0, :3]])[:, :, 0])


def test_layers_accept_one_image_and_sorted_factor_pairs():
    x = np.random.default_rng(3).uniform(0, 255, (7, 6, 2)).astype(np.float32)
    a = layers.RandomRotation((0.2, 0.2), fill_mode="wrap")(x, training=True).numpy()
    b = layers.RandomRotation((0.2, 0.2), fill_mode="wrap")(x[None], training=True).numpy()[0]
    np.testing.assert_array_equal(a, b)
    assert layers.RandomZoom((0.3, -0.1))._hr == (-0.1, 0.3)  # Keras sorts a pair
    assert layers.RandomRotation(-0.2)._range == (-0.2, 0.2)  # and takes |f| of a number
    brightness = layers.RandomBrightness((0.4, -0.2))
    assert (brightness._lower, brightness._upper) == (-0.2, 0.4)
    # one image: one shift for all of it (Keras 3), not one per row
    mid = 100 + x / 10  # far enough from 0 and 255 that nothing clips
    shifted = layers.RandomBrightness(0.3, seed=2)(mid, training=True).numpy() - mid
    assert np.ptp(shifted) < 1e-4 and abs(shifted.flat[0]) > 0
    # RandomContrast on one image: one factor, the mean per channel over height and width
    y = layers.RandomContrast(0.5, seed=3)(mid, training=True).numpy()
    mean = mid.mean(axis=(0, 1))
    factor = (y - mean) / (mid - mean)
    assert np.ptp(factor) < 1e-3 and 0.5 <= factor.flat[0] <= 1.5


def test_config_round_trip_keeps_fill_arguments():
    lay = layers.RandomZoom(0.2, (-0.1, 0.3), fill_mode="constant", interpolation="nearest", fill_value=4.0, seed=2)
    cfg = lay.get_config()
    assert (cfg["fill_mode"], cfg["interpolation"], cfg["fill_value"], cfg["width_factor"]) == \
        ("constant", "nearest", 4.0, (-0.1, 0.3))
    x = np.random.default_rng(4).uniform(0, 1, (2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(layers.RandomZoom.from_config(cfg)(x, training=True).numpy(),
                                  layers.RandomZoom(**{k: cfg[k] for k in ("height_factor", "width_factor", "fill_mode",
                                                                           "interpolation", "fill_value", "seed")})(
                                      x, training=True).numpy())


def test_grid_modes_against_direct_numpy(impl):
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    shift = np.array([[1.0, 0, -2], [0, 1, 3]])  # output (r, c) samples (r - 2, c + 3)
    got = K.warp_affine(x, shift, fill_mode="grid-wrap", implementation=impl)
    np.testing.assert_allclose(got, np.roll(x, (2, -3), axis=(1, 2)), atol=1e-4)
    got = K.warp_affine(x, shift, fill_mode="reflect", interpolation="nearest", implementation=impl)
    sym = np.pad(x, ((0, 0), (2, 0), (0, 3), (0, 0)), mode="symmetric")
    np.testing.assert_array_equal(got, sym[:, :5, 3:])
    # half a pixel left of the image: the border column blends half and half with the fill
    half = np.array([[1.0, 0, 0], [0, 1, -0.5]])
    got = K.warp_affine(x, half, fill_mode="grid-constant", cval=-8.0, implementation=impl)
    np.testing.assert_allclose(got[:, :, 0], 0.5 * x[:, :, 0] - 4.0, atol=1e-4)
    np.testing.assert_allclose(got[:, :, 1:], 0.5 * (x[:, :, :-1] + x[:, :, 1:]), atol=1e-4)
    # nearest rounds half away from zero: -0.5 -> -1 is outside, c - 0.5 -> c for c >= 1
    got = K.warp_affine(x, half, fill_mode="grid-constant", cval=-8.0, interpolation="nearest",
                        implementation=impl)
    np.testing.assert_array_equal(got[:, :, 0], np.full_like(x[:, :, 0], -8.0))
    np.testing.assert_array_equal(got[:, :, 1:], x[:, :, 1:])
    nan = K.warp_affine(np.full((1, 3, 3, 1), np.nan, np.float32), half, fill_mode="grid-wrap",
                        implementation=impl)
    assert np.isnan(nan).all()


@pytest.mark.skipif(not K.compiled_available(), reason="fastconv.data._kernels not built")
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_compiled_grid_modes_match_numpy_twin(dtype):
    rng = np.random.default_rng(8)
    x = rng.uniform(0, 255, (3, 13, 17, 2)).astype(dtype)
    mats = rng.normal(size=(3, 2, 3)) * 3
    for mode in K.WARP_FILL_MODES:
        for interp in K.WARP_INTERPOLATIONS:
            np.testing.assert_array_equal(
                K.warp_affine(x, mats, (11, 8), mode, 5, interp, implementation="cython"),
                K.warp_affine(x, mats, (11, 8), mode, 5, interp, implementation="numpy"), err_msg=f"{mode} {interp}")


@pytest.mark.parametrize("make, match", [
    (lambda: layers.RandomRotation(0.1, fill_mode="mirror"), "fill_mode must be one of"),
    (lambda: layers.RandomZoom(0.1, interpolation="bicubic"), "interpolation must be one of"),
    (lambda: layers.RandomRotation(1.5), r"factor must be a number or a pair of numbers in \[-1, 1\]"),
    (lambda: layers.RandomZoom((-1.0, 0.2)), r"height_factor must be .* in \(-1, 1\]"),
    (lambda: layers.RandomTranslation(0.1, (0.1, 0.2, 0.3)), "width_factor must be"),
    (lambda: layers.RandomTranslation(0.1, "0.2"), "width_factor must be"),
    (lambda: layers.RandomFlip(data_format="channels_first"), "data_format='channels_last'"),
    (lambda: layers.RandomBrightness(1.2), r"factor must be a number or a pair of numbers in \[-1, 1\]"),
    (lambda: layers.Resizing(4, 4, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True), "only one of"),
    (lambda: layers.Resizing(4, 4, fill_mode="reflect"), "fill_mode must be 'constant'"),
    (lambda: K.warp_affine(np.zeros((1, 3, 3, 1)), np.eye(3)[:2], interpolation="cubic"),
     "interpolation must be one of"),
])
def test_bad_arguments_name_themselves(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_antialias_is_refused_clearly():
    with pytest.raises(NotImplementedError, match="antialias"):
        layers.Resizing(4, 4, antialias=True)


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_live_keras3_on_fresh_inputs(tmp_path, backend):
    """The layers recomputed now by Keras 3 on other inputs (optional). The tensorflow backend's
    "wrap" is left out: tf.raw_ops.ImageProjectiveTransformV3 wraps with a period mixing H and
    H-1 (a source position in (-1, 0) reads the last pixel), unlike Keras's other backends."""
    peer = os.environ.get("FASTCONV_PEER_PYTHON")
    if not peer:
        pytest.skip("set FASTCONV_PEER_PYTHON to a Python with Keras 3 (and tensorflow or torch)")
    arrays = mk.inputs(seed=2026)
    np.savez(tmp_path / "in.npz", **arrays)
    run = subprocess.run([peer, os.path.join(HERE, "golden", "make_preprocessing_golden.py"),
                          str(tmp_path / "out.npz"), str(tmp_path / "in.npz")],
                         env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True, timeout=300)
    if run.returncode != 0 and "No module named" in run.stderr:
        pytest.skip(f"the peer Python lacks the {backend} backend")
    assert run.returncode == 0, run.stderr[-2000:]
    with np.load(tmp_path / "out.npz") as f:
        ref = {k: f[k] for k in f.files}
    assert str(ref["keras_backend"]) == backend
    _check_against(ref, skip_modes=("wrap",) if backend == "tensorflow" else ())
    _check_resizing(ref)
    _check_tf_resize(ref)


@pytest.mark.parametrize("kwargs, match", [(dict(interpolation="bicubic"), "interpolation='bicubic'"),
                                           (dict(interpolation="area"), "interpolation='area'")])
def test_onnx_export_refuses_what_it_cannot_write(tmp_path, kwargs, match):
    pytest.importorskip("onnx")
    import fastconv
    from fastconv import models
    inputs = layers.Input((6, 9, 2))
    model = models.Model(inputs, layers.Resizing(4, 4, **kwargs)(inputs))
    with pytest.raises(fastconv.onnx.UnsupportedLayerError, match=match):
        fastconv.onnx.export(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_an_older_compiled_extension_is_not_given_the_new_modes(monkeypatch):
    """A _kernels built before WARP_API 2 takes (x, out, m, mode, cval, threads): it still runs
    the scipy modes, and the grid- modes and nearest warps go to the NumPy twin."""
    calls = []

    def old_warp(x, out, m, mode, cval, threads):
        calls.append(mode)
        out[...] = 1.0

    monkeypatch.setattr(K, "_compiled", type("OldKernels", (), {"warp_affine": staticmethod(old_warp)}))
    x = np.random.default_rng(6).uniform(0, 255, (1, 4, 5, 1)).astype(np.float32)
    m = np.array([[1.0, 0, 0.3], [0, 1, -0.7]])
    assert (K.warp_affine(x, m, fill_mode="reflect") == 1.0).all() and calls == [2]
    want = K.warp_affine(x, m, fill_mode="grid-wrap", interpolation="nearest", implementation="numpy")
    np.testing.assert_array_equal(K.warp_affine(x, m, fill_mode="grid-wrap", interpolation="nearest"), want)
    assert calls == [2]
