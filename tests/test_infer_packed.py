"""Few-row conv products against weights packed once (conv2d_prepare's "packed" form at the avx2
level: 16-column panels, csrc/cpu/infer_packed_avx2.h) against the float64 NumPy reference.

At avx2 a conv with at most 64 output positions and weights of at least 64 KiB gets the form;
its forward reads the panels in 6-row x 16-column register tiles, the reduction in slices whose
partial sums wait in y. Each output element is one chain of FMAs in the order of the reduction,
whatever the column block a thread takes: 1 and 2 threads give identical outputs. Tolerance:
max|err| <= 1e-5 * max|ref| (float32 sums of up to ~5000 products, each within a few ulps of
the magnitude of the largest). NaN and inf reach exactly the outputs that read them. At the
baseline level (and with AVX-512's own packed form) the tests check only the reference.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

AVX2_PACKED = not _C.has_native_gemm and _C.isa_level() == "avx2"

# (x shape, (kh, kw, cout), strides, pads): batch-1 deep layers scaled down, odd sizes, row
# tails 1..5 of the 6-row tile, column tails 1..15 of the 16-column panel, K over several
# 256-step slices and not a multiple of them.
CASES = [
    ((1, 4, 4, 64), (3, 3, 64), (1, 1), (1, 1, 1, 1)),       # ResNet-18 conv5 in small: 16 rows
    ((1, 8, 8, 40), (3, 3, 72), (1, 1), (1, 1, 1, 1)),       # 64 rows, 72 columns (tail 8)
    ((1, 7, 7, 56), (3, 3, 33), (1, 1), (1, 1, 1, 1)),       # 49 rows (tail 1), tail 1 column
    ((1, 5, 3, 100), (3, 3, 47), (1, 1), (1, 1, 1, 1)),      # 15 rows (tail 3), K = 900
    ((1, 8, 8, 64), (3, 3, 50), (2, 2), (0, 1, 0, 1)),       # strided, the plan's pads: 16 rows
    ((1, 7, 7, 300), (1, 1, 100), (1, 1), (0, 0, 0, 0)),     # 1x1, K = 300 (slice + 44)
    ((1, 1, 1, 257), (1, 1, 77), (1, 1), (0, 0, 0, 0)),      # one row (a classifier conv)
    ((2, 3, 5, 48), (3, 3, 130), (1, 1), (1, 1, 1, 1)),      # batch 2, 30 rows, 130 columns
    ((3, 2, 3, 96), (2, 2, 96), (1, 1), (0, 1, 0, 1)),       # batch 3, even kernel, 18 rows
    ((1, 2, 2, 600), (3, 3, 29), (1, 1), (1, 1, 1, 1)),      # K = 5400: 22 slices, 4 rows
]


def _ref(x, w, b, strides, pads, act, res):
    z = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                         None if b is None else b.astype(np.float64), strides, pads, (1, 1), 1)
    if res is not None:
        z = z + res
    return {"linear": z, "relu": np.maximum(z, 0), "relu6": np.clip(z, 0, 6)}[act]


def _data(seed, shape, kernel):
    rng = np.random.default_rng(seed)
    kh, kw, cout = kernel
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((kh, kw, shape[3], cout)) / np.sqrt(kh * kw * shape[3])).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return rng, x, w, b


def _forward(x, w, b, strides, pads, act, res, p, threads):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        return _C.conv2d_forward(x, w, b, strides, pads, (1, 1), 1, act, res, p)
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_packed_form_against_reference(case):
    shape, kernel, strides, pads = CASES[case]
    rng, x, w, b = _data(100 + case, shape, kernel)
    p = _C.conv2d_prepare(w, x.shape, strides, pads, (1, 1), 1)
    if AVX2_PACKED:
        kh, kw, cout = kernel
        assert p is not None and p.size == kh * kw * shape[3] * ((cout + 15) // 16 * 16)
        assert _C.conv2d_prepared_form(w.shape, x.shape, strides, pads, (1, 1), 1) == "packed"
    y0 = _C.conv2d_forward(x, w, b, strides, pads, (1, 1), 1, "linear")
    res = rng.standard_normal(y0.shape).astype(np.float32)
    for act, bias, r in (("linear", b, None), ("relu", b, None), ("relu6", None, None),
                         ("relu", b, res), ("linear", None, res), ("relu6", b, res)):
        ref = _ref(x, w, bias, strides, pads, act, r)
        outs = [_forward(x, w, bias, strides, pads, act, r, p, t) for t in (1, 2)]
        for got in outs:
            assert got.shape == ref.shape
            assert np.abs(got - ref).max() <= 1e-5 * max(np.abs(ref).max(), 1.0), act
        if p is not None:  # the column split between threads does not change the sums
            np.testing.assert_array_equal(outs[0], outs[1])


def test_the_pass_reads_the_packed_copy():
    # A copy packed from other weights gives their output: the pass reads the panels, not w.
    shape, kernel, strides, pads = CASES[1]
    _, x, w1, b = _data(7, shape, kernel)
    _, _, w2, _ = _data(8, shape, kernel)
    p2 = _C.conv2d_prepare(w2, x.shape, strides, pads, (1, 1), 1)
    if p2 is None:
        pytest.skip("no packed form at this ISA level")
    for t in (1, 2):
        got = _forward(x, w1, b, strides, pads, "relu", None, p2, t)
        ref = _ref(x, w2, b, strides, pads, "relu", None)
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("threads", [1, 2])
def test_nan_and_inf_reach_exactly_their_outputs(threads):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 6, 6, 300)).astype(np.float32)  # 36 rows, W of 94 KiB
    w = (rng.standard_normal((1, 1, 300, 80)) / 17).astype(np.float32)
    b = rng.standard_normal(80).astype(np.float32)
    x[0, 1, 2, 5] = np.nan
    x[0, 4, 4, 260] = np.inf
    args = ((1, 1), (0, 0, 0, 0))
    p = _C.conv2d_prepare(w, x.shape, *args, (1, 1), 1)
    assert (p is not None) == AVX2_PACKED or _C.has_native_gemm
    for act in ("linear", "relu", "relu6"):
        y = _forward(x, w, b, *args, act, None, p, threads).reshape(-1, 80)
        assert np.isnan(y[1 * 6 + 2]).all(), act
        inf_row = y[4 * 6 + 4]
        # inf * w: +-inf (relu keeps +inf, gives 0 for -inf; relu6 caps +inf at 6)
        assert not np.isfinite(inf_row).all() or act != "linear"
        others = np.delete(y, [1 * 6 + 2, 4 * 6 + 4], axis=0)
        assert np.isfinite(others).all(), act


def test_geometries_without_the_form():
    rng = np.random.default_rng(10)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    w = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
    if not _C.has_native_gemm:
        # 9x9 = 81 output positions: more rows than the few-row products (the row chunks)
        w1 = rng.standard_normal((1, 1, 256, 256)).astype(np.float32)
        assert _C.conv2d_prepare(w1, (1, 9, 9, 256), (1, 1), (0, 0, 0, 0), (1, 1), 1) is None
        # small weights (3x3 x 8 -> 64: 18 KiB): pointwise_avx2's per-call panels
        w8 = np.ascontiguousarray(w[:, :, :8, :])
        assert _C.conv2d_prepare(w8, (1, 4, 4, 8), *args) is None
    # grouped convs have no packed form
    wg = rng.standard_normal((3, 3, 32, 64)).astype(np.float32)
    assert _C.conv2d_prepare(wg, (1, 4, 4, 64), (1, 1), (1, 1, 1, 1), (1, 1), 2) is None


def test_predict_uses_the_form_and_matches_layer_by_layer():
    # A small batch-1 network whose deep convs take the form: the plan's output against the
    # layer-by-layer run, on one and two threads (identical between them).
    from fastconv import layers, models
    fastconv.set_seed(3)
    inp = layers.Input((8, 8, 24))
    h = layers.Conv2D(96, 3, padding="same", activation="relu")(inp)
    h = layers.Conv2D(80, 3, strides=2, padding="same")(h)
    h = layers.BatchNormalization()(h)
    h = layers.ReLU()(h)
    h = layers.Conv2D(130, 1, activation="relu")(h)
    model = models.Model(inp, h)
    x = np.random.default_rng(4).standard_normal((1, 8, 8, 24)).astype(np.float32)
    fastconv.set_inference_plan(False)
    try:
        want = model.predict_on_batch(x)
    finally:
        fastconv.set_inference_plan(True)
    before = fastconv.get_num_threads()
    outs = []
    try:
        for t in (1, 2):
            fastconv.set_num_threads(t)
            outs.append(model.predict_on_batch(x))
            outs.append(model.predict_on_batch(x))
    finally:
        fastconv.set_num_threads(before)
    for got in outs:
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[2], outs[3])
