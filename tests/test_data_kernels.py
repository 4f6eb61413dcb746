"""fastconv.data.kernels: the batch image kernels of the input pipeline (issue 19).

Three references: (1) tf.image.resize and Keras's ImageDataGenerator.apply_transform, stored in
tests/golden/data_kernels.npz (tests/golden/make_data_kernels_golden.py; recomputed live on
other inputs when FASTCONV_PEER_PYTHON names an interpreter with tensorflow, keras and scipy);
(2) direct NumPy computations written here (block means, slicing, explicit index formulas);
(3) the NumPy twins in kernels_numpy, which the compiled Cython kernels must match (exactly,
except the area resize's float32 sums: 1e-4).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv.data import kernels as K
from fastconv.data.affine import keras_transform_matrix

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "golden"))
import make_data_kernels_golden as mk  # noqa: E402

GOLDEN = os.path.join(HERE, "golden", "data_kernels.npz")
IMPLS = ["numpy"] + (["cython"] if K.compiled_available() else [])
# float32 reference values: bilinear/nearest match TF bit for bit; area sums in another order
RESIZE_ATOL = {"bilinear": 1e-4, "nearest": 0, "area": 2e-3}
AFFINE_ATOL = 1e-4  # float64 interpolation rounded to float32 in both


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


def _check_resize(x, ref, impl):
    for method in K.RESIZE_METHODS:
        for h, w in mk.RESIZE_SIZES:
            got = K.resize(x, (h, w), method, implementation=impl)
            want = ref[f"resize_{method}_{h}_{w}"]
            assert got.dtype == want.dtype, (method, got.dtype, want.dtype)
            np.testing.assert_allclose(got, want, rtol=0, atol=RESIZE_ATOL[method], err_msg=f"{method} {h}x{w}")


def _check_affine(x, ref, impl):
    h, w = x.shape[:2]
    for mode in mk.FILL_MODES:
        for i, params in enumerate(mk.AFFINE_PARAMS):
            m = keras_transform_matrix(*params, height=h, width=w)
            got = K.warp_affine(x[None], m, fill_mode=mode, cval=17.0, implementation=impl)[0]
            np.testing.assert_allclose(got, ref[f"affine_{mode}_{i}"], rtol=0, atol=AFFINE_ATOL,
                                       err_msg=f"{mode} {params}")


def test_resize_matches_tensorflow_golden(golden, impl):
    _check_resize(golden["resize_x"], golden, impl)


def test_warp_affine_matches_keras_apply_transform_golden(golden, impl):
    _check_affine(golden["affine_x"], golden, impl)


def test_live_peer_on_fresh_inputs(tmp_path, impl):
    """tf.image.resize and Keras's apply_transform recomputed now on other inputs (optional)."""
    peer = os.environ.get("FASTCONV_PEER_PYTHON")
    if not peer:
        pytest.skip("set FASTCONV_PEER_PYTHON to a Python with tensorflow, keras and scipy")
    arrays = mk.inputs(seed=2026)
    np.savez(tmp_path / "in.npz", **arrays)
    subprocess.run([peer, os.path.join(HERE, "golden", "make_data_kernels_golden.py"), str(tmp_path / "out.npz"),
                    str(tmp_path / "in.npz")], check=True, capture_output=True, timeout=300)
    with np.load(tmp_path / "out.npz") as f:
        ref = {k: f[k] for k in f.files}
    _check_resize(arrays["resize_x"], ref, impl)
    _check_affine(arrays["affine_x"], ref, impl)


@pytest.mark.skipif(not K.compiled_available(), reason="fastconv.data._kernels not built")
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_compiled_matches_numpy_twin(dtype):
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 255, (3, 13, 17, 2)).astype(dtype)
    for method in K.RESIZE_METHODS:
        for size in ((7, 9), (26, 40), (13, 17), (1, 1)):
            a = K.resize(x, size, method, implementation="cython")
            b = K.resize(x, size, method, implementation="numpy")
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-4 if method == "area" else 0)
    mats = rng.normal(size=(3, 2, 3)) * 3
    for mode in K.FILL_MODES:
        np.testing.assert_array_equal(K.warp_affine(x, mats, (11, 8), mode, 5, implementation="cython"),
                                      K.warp_affine(x, mats, (11, 8), mode, 5, implementation="numpy"))
    args = ([1, 0, 2], [3, 1, 0], (9, 12), [True, False, True], [False, True, True])
    np.testing.assert_array_equal(K.crop_flip(x, *args, implementation="cython"),
                                  K.crop_flip(x, *args, implementation="numpy"))
    np.testing.assert_array_equal(K.color_jitter(x, [3, -40, 0], [0.5, 1.5, 1], implementation="cython"),
                                  K.color_jitter(x, [3, -40, 0], [0.5, 1.5, 1], implementation="numpy"))
    if dtype == np.uint8:
        np.testing.assert_array_equal(K.to_float(x, 1 / 255, [0.4, 0.5], [0.2, 0.3], implementation="cython"),
                                      K.to_float(x, 1 / 255, [0.4, 0.5], [0.2, 0.3], implementation="numpy"))


@pytest.mark.skipif(not K.compiled_available(), reason="fastconv.data._kernels not built")
def test_compiled_result_does_not_depend_on_thread_count():
    x = np.random.default_rng(3).integers(0, 256, (5, 20, 24, 3), dtype=np.uint8)
    m = keras_transform_matrix(25, 2, -1, 5, 1.1, 0.9, height=20, width=24)
    old = fastconv.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            fastconv.set_num_threads(t)
            outs.append((K.resize(x, (31, 17), "area"), K.resize(x, (41, 13)), K.warp_affine(x, m, fill_mode="reflect")))
    finally:
        fastconv.set_num_threads(old)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_resize_independent_oracles(impl):
    x = np.random.default_rng(1).integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    # same size: every method is the identity
    for method in K.RESIZE_METHODS:
        np.testing.assert_array_equal(K.resize(x, (8, 12), method, implementation=impl), x)
    # integer downscale: area is the block mean, bilinear the mean of the 2x2 centre taps
    block = x.astype(np.float64).reshape(2, 4, 2, 6, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(K.resize(x, (4, 6), "area", implementation=impl), block, atol=1e-4)
    np.testing.assert_allclose(K.resize(x, (4, 6), "bilinear", implementation=impl), block, atol=1e-4)
    # integer upscale: nearest repeats pixels
    np.testing.assert_array_equal(K.resize(x, (16, 36), "nearest", implementation=impl),
                                  x.repeat(2, axis=1).repeat(3, axis=2))
    # bilinear upscale by 2, interior row: pos = (o + 0.5)/2 - 0.5 -> o=1: 0.25 between rows 0, 1
    up = K.resize(x, (16, 12), "bilinear", implementation=impl)
    np.testing.assert_allclose(up[:, 1], 0.75 * x[:, 0] + 0.25 * x[:, 1], atol=1e-4)
    np.testing.assert_allclose(up[:, 0], x[:, 0], atol=1e-4)  # clamped at the border


def test_resize_writes_into_out(impl):
    x = np.random.default_rng(4).integers(0, 256, (2, 9, 7, 3), dtype=np.uint8)
    for method in ("bilinear", "area"):
        batch = np.full((3, 5, 11, 3), -1, np.float32)
        got = K.resize(x, (5, 11), method, implementation=impl, out=batch[1:])
        assert got is not None and np.shares_memory(got, batch)
        np.testing.assert_array_equal(batch[1:], K.resize(x, (5, 11), method, implementation=impl))
        assert (batch[0] == -1).all()  # nothing written outside out
    for bad in (np.zeros((2, 5, 11, 3), np.float64), np.zeros((2, 5, 10, 3), np.float32),
                np.zeros((2, 5, 22, 3), np.float32)[:, :, ::2], "not an array"):
        with pytest.raises(ValueError, match="out must be"):
            K.resize(x, (5, 11), "bilinear", implementation=impl, out=bad)


def test_resize_propagates_nan(impl):
    x = np.ones((1, 4, 4, 1), np.float32)
    x[0, 1, 1, 0] = np.nan
    out = K.resize(x, (8, 8), "bilinear", implementation=impl)
    assert np.isnan(out[0, 2:4, 2:4, 0]).all() and not np.isnan(out[0, 7, 7, 0])


def test_warp_affine_independent_oracles(impl):
    x = np.random.default_rng(2).uniform(0, 255, (2, 6, 7, 2)).astype(np.float32)
    ident = np.array([[1.0, 0, 0], [0, 1, 0]])
    for mode in K.FILL_MODES:
        np.testing.assert_array_equal(K.warp_affine(x, ident, fill_mode=mode, implementation=impl), x)
    # whole-pixel translation: output (r, c) = input (r + 2, c - 1); explicit index rules per mode
    shift = np.array([[1.0, 0, 2], [0, 1, -1]])
    r = np.arange(6)[:, None] + 2
    c = np.arange(7)[None, :] - 1
    expect = {
        "nearest": x[:, np.clip(r, 0, 5), np.clip(c, 0, 6)],
        "reflect": x[:, np.where(r > 5, 11 - r, r), np.where(c < 0, -c - 1, c)],
        "wrap": x[:, np.where(r > 5, r - 5, r), np.where(c < 0, c + 6, c)],  # scipy's period n - 1
    }
    for mode, want in expect.items():
        np.testing.assert_allclose(K.warp_affine(x, shift, fill_mode=mode, implementation=impl), want, atol=1e-4)
    const = K.warp_affine(x, shift, fill_mode="constant", cval=-3, implementation=impl)
    inside = (r <= 5) & (c >= 0)
    np.testing.assert_allclose(const[:, inside], x[:, np.clip(r, 0, 5), np.clip(c, 0, 6)][:, inside], atol=1e-4)
    assert (const[:, ~inside] == -3).all()
    # half-pixel shift: the mean of two neighbours
    half = K.warp_affine(x, np.array([[1.0, 0, 0], [0, 1, 0.5]]), fill_mode="nearest", implementation=impl)
    np.testing.assert_allclose(half[:, :, :6], (x[:, :, :6] + x[:, :, 1:]) / 2, atol=1e-4)


def test_crop_flip_matches_slicing(impl):
    x = np.random.default_rng(3).integers(0, 256, (3, 7, 9, 3), dtype=np.uint8)
    got = K.crop_flip(x, [0, 2, 1], [4, 0, 1], (5, 5), [False, True, True], [True, False, True], implementation=impl)
    np.testing.assert_array_equal(got[0], x[0, 0:5, 4:9][::-1])
    np.testing.assert_array_equal(got[1], x[1, 2:7, 0:5][:, ::-1])
    np.testing.assert_array_equal(got[2], x[2, 1:6, 1:6][::-1, ::-1])
    np.testing.assert_array_equal(K.flip(x, horizontal=True, implementation=impl), x[:, :, ::-1])
    np.testing.assert_array_equal(K.flip(x, vertical=[True, False, False], implementation=impl)[0], x[0, ::-1])


def test_color_jitter_and_to_float_formulas(impl):
    x = np.random.default_rng(4).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    xf = x.astype(np.float64)
    mean = xf.mean(axis=(1, 2), keepdims=True)
    want = np.clip((xf - mean) * np.array([0.5, 2.0])[:, None, None, None] + mean
                   + np.array([10.0, -5.0])[:, None, None, None], 0, 255)
    got = K.color_jitter(x, [10, -5], [0.5, 2.0], implementation=impl)
    np.testing.assert_allclose(got, want, atol=1e-3)
    np.testing.assert_allclose(K.color_jitter(x, 300.0, implementation=impl), 255)
    got = K.to_float(x, 1 / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], implementation=impl)
    want = (xf / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda: K.resize(np.zeros((4, 4, 3), np.uint8), (2, 2)), r"NHWC batch \(N, H, W, C\), got shape \(4, 4, 3\)"),
    (lambda: K.resize(np.zeros((1, 4, 4, 3), np.uint8), (0, 2)), "size must be a pair of positive ints"),
    (lambda: K.resize(np.zeros((1, 4, 4, 3), np.uint8), 5), "size must be a pair"),
    (lambda: K.resize(np.zeros((1, 4, 4, 3), np.uint8), (2, 2), "bicubic"), "method must be one of"),
    (lambda: K.resize(np.zeros((1, 4, 4, 3), np.uint8), (2, 2), implementation="gpu"), "implementation must be"),
    (lambda: K.resize(np.zeros((1, 0, 4, 3), np.uint8), (2, 2)), "non-empty"),
    (lambda: K.resize(np.array([[[["a"]]]]), (2, 2)), "must hold numbers"),
    (lambda: K.warp_affine(np.zeros((2, 4, 4, 1)), np.eye(3)), r"matrices must have shape \(N, 2, 3\) = \(2, 2, 3\)"),
    (lambda: K.warp_affine(np.zeros((1, 4, 4, 1)), np.eye(3)[:2], fill_mode="mirror"), "fill_mode must be one of"),
    (lambda: K.warp_affine(np.zeros((1, 4, 4, 1)), np.full((2, 3), np.nan)), "matrices must be finite"),
    (lambda: K.crop_flip(np.zeros((2, 4, 4, 1)), [0, 1], 0, (4, 4)), r"crop window 4x4 at \(top=1, left=0\) of image 1"),
    (lambda: K.crop_flip(np.zeros((2, 4, 4, 1)), [0, 1, 2], 0, (2, 2)), r"top must be a scalar or one value per image, shape \(2,\)"),
    (lambda: K.to_float(np.zeros((1, 2, 2, 3), np.uint8), std=0), "std must be non-zero"),
    (lambda: K.to_float(np.zeros((1, 2, 2, 3), np.uint8), std=[1, 2]), r"std must be a scalar or one value per channel \(3,\)"),
    (lambda: K.color_jitter(np.zeros((1, 2, 2, 3)), value_range=(1, 0)), "value_range must be"),
])
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_numpy_fallback_when_extension_missing(monkeypatch):
    x = np.random.default_rng(5).integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
    want = K.resize(x, (4, 5), implementation="numpy")
    monkeypatch.setattr(K, "_compiled", None)
    assert not K.compiled_available()
    np.testing.assert_array_equal(K.resize(x, (4, 5)), want)  # "auto" falls back silently
    with pytest.raises(ImportError, match="fastconv.data._kernels is not built"):
        K.resize(x, (4, 5), implementation="cython")
