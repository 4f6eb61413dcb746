"""Winograd convolution (csrc/cpu/winograd.cpp) against the float64 oracle, and the algorithm
setting and query.

Tolerance: max|err| / max|ref| <= 1e-4 per pass (an elementwise rtol would be meaningless:
Winograd's error scales with the magnitude of the whole tile's inputs, not of one output).
Measured (benchmarks/bench_winograd.py, random normal data, 'same', first 2 images):
    N=32 56x56 64->64:   forward 6.5e-6, backward data 6.2e-6, backward weights 8.7e-6
    N=32 14x14 256->256: forward 9.9e-6, backward data 1.1e-5, backward weights 2.5e-6
(im2col: 2e-7 to 5e-7 on the same layers), so 1e-4 leaves a 10x margin.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import fastconv
from fastconv import _C
from fastconv import functional as F
from fastconv import reference as R
from threads_used import conv_pass_threads

TOL = 1e-4
PASSES = ("forward", "backward_data", "backward_weights")


@pytest.fixture
def winograd():
    """Force Winograd wherever eligible; restore the setting afterwards."""
    saved = fastconv.get_conv_algorithm()
    fastconv.set_conv_algorithm("winograd")
    yield
    fastconv.set_conv_algorithm(saved)


@pytest.fixture
def small_workspace():
    saved = _C.get_workspace_limit()
    yield
    _C.set_workspace_limit(saved)


def _rel_err(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = float(np.abs(ref).max(initial=0.0))
    return float(np.abs(got - ref).max(initial=0.0)) / scale if scale > 0 else float(np.abs(got).max(initial=0.0))


def _inputs(rng, n, h, w, cin, cout, bias):
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    return x, wt, b


def _passes(x, wt, b, dy, args):
    y = _C.conv2d_forward(x, wt, b, *args)
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, b is not None)
    return y, dx, dw, db


def _check(rng, n, h, w, cin, cout, pads, bias=True, expect="winograd"):
    """All three passes against the oracle; the query must say `expect` for every pass."""
    args = ((1, 1), pads, (1, 1), 1)
    x, wt, b = _inputs(rng, n, h, w, cin, cout, bias)
    assert set(_C.conv_algorithm(x.shape, wt.shape, *args).values()) == {expect}
    oh, ow = h + pads[0] + pads[1] - 2, w + pads[2] + pads[3] - 2
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    y, dx, dw, db = _passes(x, wt, b, dy, args)
    x64, w64, dy64 = x.astype(np.float64), wt.astype(np.float64), dy.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    assert _rel_err(y, R.conv2d_forward(x64, w64, b64, *args)) <= TOL
    assert _rel_err(dx, R.conv2d_backward_data(dy64, w64, x.shape, *args)) <= TOL
    rdw, rdb = R.conv2d_backward_weights(dy64, x64, wt.shape, *args, bias)
    assert _rel_err(dw, rdw) <= TOL
    if bias:
        assert _rel_err(db, rdb) <= 1e-5
    else:
        assert db is None


# name: (n, h, w, cin, cout, (top, bottom, left, right), bias)
CASES = {
    "odd_hw_same": (2, 7, 9, 3, 5, (1, 1, 1, 1), True),
    "batch1_valid": (1, 11, 6, 4, 3, (0, 0, 0, 0), False),
    "tiny_1x1": (2, 1, 1, 5, 6, (1, 1, 1, 1), True),
    "tiny_2x3": (1, 2, 3, 2, 7, (1, 1, 1, 1), True),
    "tiny_2x3_pads2": (1, 2, 3, 3, 2, (2, 2, 2, 2), False),
    "valid_exact_3x3": (3, 3, 3, 6, 4, (0, 0, 0, 0), True),
    "asym_pads": (2, 10, 13, 5, 9, (0, 2, 1, 0), True),
    "asym_pads_2": (1, 9, 8, 7, 3, (2, 1, 0, 2), False),
    "tf_same_even": (2, 8, 8, 6, 6, (1, 1, 1, 1), True),
    "wide_channels": (1, 9, 9, 70, 65, (1, 1, 1, 1), True),
    "cin1": (2, 12, 12, 1, 70, (1, 1, 1, 1), True),
    "cout1": (2, 12, 12, 70, 1, (1, 1, 1, 1), False),
    "chunk_edge": (1, 6, 7, 64, 129, (1, 1, 0, 0), True),  # 64 = one channel chunk, 129 = 2 + 1
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_winograd_cases(winograd, case):
    n, h, w, cin, cout, pads, bias = CASES[case]
    _check(np.random.default_rng(len(case)), n, h, w, cin, cout, pads, bias)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 13), w=st.integers(1, 13), cin=st.integers(1, 70),
       cout=st.integers(1, 70), pads=st.tuples(*[st.integers(0, 2)] * 4), bias=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_winograd_random(n, h, w, cin, cout, pads, bias, seed):
    assume(h + pads[0] + pads[1] >= 3 and w + pads[2] + pads[3] >= 3)
    saved = fastconv.get_conv_algorithm()
    fastconv.set_conv_algorithm("winograd")  # hypothesis runs examples outside fixtures
    try:
        _check(np.random.default_rng(seed), n, h, w, cin, cout, pads, bias)
    finally:
        fastconv.set_conv_algorithm(saved)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_fused_activation(winograd, activation):
    # The activation is applied per output tile (clipped cells included) in the Winograd kernel.
    rng = np.random.default_rng(8)
    x, wt, b = _inputs(rng, 2, 9, 7, 12, 10, True)
    args = ((1, 1), (1, 1, 0, 2), (1, 1), 1)
    assert _C.conv_algorithm(x.shape, wt.shape, *args)["forward"] == "winograd"
    z = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    ref = {"relu": np.maximum(z, 0), "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z)}[activation]
    got = _C.conv2d_forward(x, wt, b, *args, activation=activation)
    assert np.abs(got - ref).max() <= TOL * np.abs(z).max()


def test_many_blocks_per_thread(winograd, small_workspace):
    # A 64 KiB workspace forces blocks of a few tiles: several blocks per thread, so the
    # backward-weights partials accumulate (beta = 1) and the dynamic schedule interleaves.
    # Passes under 2^21 multiply-adds run on one thread: this one has 2.3 M.
    _C.set_workspace_limit(1 << 16)
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        _check(np.random.default_rng(3), 6, 25, 27, 8, 8, (1, 1, 1, 1))
        used = conv_pass_threads(np.ones((6, 25, 27, 8), np.float32), np.ones((3, 3, 8, 8), np.float32),
                                 (1, 1), (1, 1, 1, 1), (1, 1), 1)
    finally:
        _C.set_num_threads(old)
    assert min(used.values()) >= 2, used


def test_workspace_limit_falls_back_to_im2col(winograd, small_workspace):
    # One tile's V and M at 300 -> 300 channels (36 * 600 floats = 84 KiB) is over a 64 KiB
    # limit: im2col, same results. (U, 4x the weights, is not counted against the limit.)
    _C.set_workspace_limit(1 << 16)
    _check(np.random.default_rng(4), 1, 4, 4, 300, 300, (1, 1, 1, 1), expect="im2col")


def test_filter_transform_is_not_counted_against_the_limit(winograd, small_workspace):
    # U of 64 -> 64 is 576 KiB, over a 64 KiB limit; the blocks fit, so Winograd still runs.
    _C.set_workspace_limit(1 << 16)
    _check(np.random.default_rng(8), 1, 6, 6, 64, 64, (1, 1, 1, 1))


def test_typical_layer_error(winograd):
    # A 64->64 layer at the bound: the measured errors above, on a smaller batch.
    _check(np.random.default_rng(5), 2, 16, 16, 64, 64, (1, 1, 1, 1))


def test_deterministic(winograd):
    rng = np.random.default_rng(6)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    x, wt, b = _inputs(rng, 3, 21, 18, 24, 40, True)
    dy = rng.standard_normal((3, 21, 18, 40)).astype(np.float32)
    first, second = _passes(x, wt, b, dy, args), _passes(x, wt, b, dy, args)
    for a, c in zip(first, second):
        assert np.array_equal(a, c)


def test_auto_matches_im2col():
    rng = np.random.default_rng(7)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    x, wt, b = _inputs(rng, 2, 12, 12, 16, 24, True)
    dy = rng.standard_normal((2, 12, 12, 24)).astype(np.float32)
    saved = fastconv.get_conv_algorithm()
    try:
        fastconv.set_conv_algorithm("auto")
        assert _C.conv_algorithm(x.shape, wt.shape, *args)["forward"] == "winograd"
        auto = _passes(x, wt, b, dy, args)
        fastconv.set_conv_algorithm("im2col")
        assert set(_C.conv_algorithm(x.shape, wt.shape, *args).values()) == {"im2col"}
        ref = _passes(x, wt, b, dy, args)
    finally:
        fastconv.set_conv_algorithm(saved)
    for got, want in zip(auto, ref):
        assert _rel_err(got, want.astype(np.float64)) <= TOL


def test_query_eligible_and_not(winograd):
    assert F.conv2d_algorithm((2, 16, 16, 8), (3, 3, 8, 8), padding="same") == dict.fromkeys(PASSES, "winograd")
    assert F.conv2d_algorithm((2, 16, 16, 8), (3, 3, 8, 8), padding=((0, 2), (2, 1))) == dict.fromkeys(PASSES, "winograd")
    ineligible = [
        dict(w_shape=(3, 3, 8, 8), strides=2, padding="same"),
        dict(w_shape=(5, 5, 8, 8), padding="same"),
        dict(w_shape=(3, 3, 8, 8), dilation_rate=2, padding="same"),
        dict(w_shape=(3, 3, 4, 8), groups=2, padding="same"),
        dict(w_shape=(3, 3, 8, 8), padding=3),
        dict(w_shape=(3, 1, 8, 8), padding="same"),
    ]
    for kw in ineligible:
        w_shape = kw.pop("w_shape")
        # Groups 1 with 8 input channels is the direct kernel's range; grouped goes to im2col.
        expected = "im2col" if kw.get("groups", 1) > 1 else "direct"
        assert F.conv2d_algorithm((2, 16, 16, 8), w_shape, **kw) == dict.fromkeys(PASSES, expected), kw
        w_wide = w_shape[:2] + (16 * w_shape[2] // 8, 16)  # 16 channels: past the direct kernel's range
        assert F.conv2d_algorithm((2, 16, 16, 16), w_wide, **kw) == dict.fromkeys(PASSES, "im2col"), kw
    assert F.conv2d_algorithm((2, 16, 16, 8), (3, 3, 1, 8), padding="same", groups=8) == \
        dict.fromkeys(PASSES, "depthwise")


def test_query_follows_setting():
    saved = fastconv.get_conv_algorithm()
    try:
        big, small = ((8, 28, 28, 32), (3, 3, 32, 32)), ((8, 28, 28, 3), (3, 3, 3, 16))
        fastconv.set_conv_algorithm("auto")
        assert fastconv.get_conv_algorithm() == "auto"
        assert F.conv2d_algorithm(*big, padding="same")["forward"] == "winograd"
        assert F.conv2d_algorithm(*small, padding="same")["forward"] == "direct"  # 3 channels
        fastconv.set_conv_algorithm("winograd")
        assert F.conv2d_algorithm(*small, padding="same")["forward"] == "winograd"
        fastconv.set_conv_algorithm("Im2Col")
        assert fastconv.get_conv_algorithm() == "im2col"
        assert F.conv2d_algorithm(*big, padding="same")["forward"] == "im2col"
        assert F.conv2d_algorithm(*small, padding="same")["forward"] == "im2col"
        fastconv.set_conv_algorithm("direct")
        assert F.conv2d_algorithm(*big, padding="same")["forward"] == "direct"
    finally:
        fastconv.set_conv_algorithm(saved)


def test_bad_algorithm_names():
    saved = fastconv.get_conv_algorithm()
    for bad in ("fft", "", "winograd4"):
        with pytest.raises(ValueError, match="name"):
            fastconv.set_conv_algorithm(bad)
        with pytest.raises(ValueError, match="auto"):
            _C.set_conv_algorithm(bad)
    with pytest.raises(TypeError, match="name"):
        fastconv.set_conv_algorithm(None)
    assert fastconv.get_conv_algorithm() == saved


def test_query_validation():
    with pytest.raises(TypeError, match="x_shape"):
        F.conv2d_algorithm((2, 16, 16), (3, 3, 8, 8))
    with pytest.raises(TypeError, match="w_shape"):
        F.conv2d_algorithm((2, 16, 16, 8), "3x3")
    with pytest.raises(ValueError, match="groups"):
        F.conv2d_algorithm((2, 16, 16, 8), (3, 3, 8, 8), groups=0)
    with pytest.raises(TypeError, match="strides"):
        F.conv2d_algorithm((2, 16, 16, 8), (3, 3, 8, 8), strides="1")
    with pytest.raises(ValueError, match="channel"):
        F.conv2d_algorithm((2, 16, 16, 8), (3, 3, 4, 8))


def test_bench_winograd_quick():
    # The benchmark's --quick path, so it does not rot (asserts shape of the report, not speed).
    import os
    import sys
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.bench_winograd import main
    saved = fastconv.get_conv_algorithm()
    rows = main(["--quick", "--repeats", "1", "--only", "r18c 8x8"])
    assert fastconv.get_conv_algorithm() == saved
    assert len(rows) == 1 and set(rows[0]["times"]) == set(PASSES)
    assert rows[0]["used"] == dict.fromkeys(PASSES, "winograd")
    assert all(e["winograd"] <= TOL for e in rows[0]["errors"].values())


# ---- prepared filters (conv2d_prepare: the filter transform kept across forward calls) ----

@pytest.mark.parametrize("n, h, w, cin, cout, pads, act", [
    (1, 14, 13, 9, 11, (1, 1, 1, 1), "relu"),      # F(4x4): 4 x 4 tiles
    (1, 5, 5, 12, 10, (1, 1, 1, 2), "linear"),     # F(2x2) on the clipped odd output (5 x 6: 3 x 3 tiles)
    (2, 9, 11, 70, 65, (0, 2, 1, 0), "tanh"),      # two channel chunks each side
])
def test_prepared_filter_matches_the_oracle_and_the_unprepared_pass(winograd, n, h, w, cin, cout, pads, act):
    rng = np.random.default_rng(cin * cout)
    x, wt, b = _inputs(rng, n, h, w, cin, cout, True)
    args = ((1, 1), pads, (1, 1), 1)
    u = _C.conv2d_prepare(wt, x.shape, *args)
    assert u is not None and u.dtype == np.float32 and u.ndim == 1
    assert u.size != 9 * cin * ((cout + 31) // 32 * 32)  # the filter transform, not packed weights
    got = _C.conv2d_forward(x, wt, b, *args, act, None, u)
    # The same transform code computes U either way: the outputs are identical.
    np.testing.assert_array_equal(got, _C.conv2d_forward(x, wt, b, *args, act))
    z = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    ref = {"relu": np.maximum(z, 0), "linear": z, "tanh": np.tanh(z)}[act]
    assert np.abs(got - ref).max() <= TOL * np.abs(z).max()


def test_prepared_filter_is_what_the_pass_reads(winograd):
    # U of other weights gives that conv's output: the pass reads U, not w (so a stale U would
    # show; the inference plan's version cache must rebuild it, see test_inference_plan.py).
    rng = np.random.default_rng(3)
    x, w1, b = _inputs(rng, 1, 10, 10, 8, 16, True)
    w2 = rng.standard_normal(w1.shape).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    u2 = _C.conv2d_prepare(w2, x.shape, *args)
    got = _C.conv2d_forward(x, w1, b, *args, "linear", None, u2)
    np.testing.assert_array_equal(got, _C.conv2d_forward(x, w2, b, *args))
    # With a residual the Winograd pass runs linear and the add follows: U still used.
    res = rng.standard_normal(got.shape).astype(np.float32)
    got = _C.conv2d_forward(x, w1, b, *args, "relu", res, u2)
    np.testing.assert_allclose(got, np.maximum(_C.conv2d_forward(x, w2, b, *args) + res, 0), rtol=1e-6, atol=1e-5)


def test_prepared_filter_none_where_winograd_does_not_run():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 12, 12, 16)).astype(np.float32)
    w3 = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    same = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert _C.conv_algorithm(x.shape, w3.shape, *same)["forward"] == "winograd"
    assert _C.conv2d_prepare(w3, x.shape, *same) is not None
    w1 = rng.standard_normal((1, 1, 16, 16)).astype(np.float32)
    assert _C.conv2d_prepare(w1, x.shape, (1, 1), (0, 0, 0, 0), (1, 1), 1) is None  # pointwise
    # strided: no filter transform (the GEMM-packed weights, where the native GEMM runs)
    strided = _C.conv2d_prepare(w3, x.shape, (2, 2), (1, 1, 1, 1), (1, 1), 1)
    assert strided is None or strided.size == 9 * 16 * 32
    u = _C.conv2d_prepare(w3, x.shape, *same)
    saved = fastconv.get_conv_algorithm()
    fastconv.set_conv_algorithm("im2col")
    try:
        assert _C.conv2d_prepare(w3, x.shape, *same) is None
        # A prepared filter given anyway is ignored by the im2col pass: still the right output.
        got = _C.conv2d_forward(x, w3, None, *same, "linear", None, u)
        ref = R.conv2d_forward(x.astype(np.float64), w3.astype(np.float64), None, *same)
        assert _rel_err(got, ref) <= 1e-5
    finally:
        fastconv.set_conv_algorithm(saved)


def test_prepared_filter_validation():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 12, 12, 16)).astype(np.float32)
    w3 = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    same = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    u = _C.conv2d_prepare(w3, x.shape, *same)
    assert u is not None
    with pytest.raises(ValueError, match="prepared"):
        _C.conv2d_forward(x, w3, None, *same, "linear", None, u[:-1])
    with pytest.raises(ValueError, match="prepared"):  # another output size: another tile size
        _C.conv2d_forward(np.ascontiguousarray(x[:, :5, :5]), w3, None, *same, "linear", None, u)
    w1 = rng.standard_normal((1, 1, 16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="prepared"):  # a geometry with no prepared form
        _C.conv2d_forward(x, w1, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, "linear", None, u)
    with pytest.raises((ValueError, TypeError)):
        _C.conv2d_forward(x, w3, None, *same, "linear", None, u.reshape(1, -1))
    with pytest.raises((ValueError, TypeError)):
        _C.conv2d_prepare(w3, (1, 12, 12), *same)


# ---- one image on several threads: the Cout split (run_forward_cout_split) ----
# Taken where n == 1, at >= 2 threads, with at most 8 tiles a thread, Cout >= 128 and U over
# 1 MiB (36 * Cin * Cout * 4 bytes at F(4,3)); both passes built on run_forward use it (the
# forward, and the backward data pass with the roles of Cin and Cout swapped).
@pytest.mark.parametrize("h, w, cin, cout, pads, act", [
    (10, 9, 96, 128, (1, 1, 1, 1), "relu"),       # 3 x 3 tiles, two 64-column items
    (14, 14, 64, 200, (1, 1, 1, 1), "linear"),    # 16 tiles, a short last item (200 = 3*64 + 8)
    (7, 11, 130, 129, (0, 2, 1, 0), "tanh"),      # asymmetric pads, channel chunk edges
])
@pytest.mark.parametrize("threads", [2, 3])
def test_one_image_cout_split_matches_the_oracle(winograd, h, w, cin, cout, pads, act, threads):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        rng = np.random.default_rng(h * w + cin)
        args = ((1, 1), pads, (1, 1), 1)
        x, wt, b = _inputs(rng, 1, h, w, cin, cout, True)
        z = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
        ref = {"relu": np.maximum(z, 0), "linear": z, "tanh": np.tanh(z)}[act]
        u = _C.conv2d_prepare(wt, x.shape, *args)
        for prepared in (None, u):
            got = _C.conv2d_forward(x, wt, b, *args, act, None, prepared)
            assert np.abs(got - ref).max() <= TOL * np.abs(z).max()
        # backward data: its problem has Cin and Cout swapped (cin >= 128 here uses the split)
        dy = rng.standard_normal(z.shape).astype(np.float32)
        dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
        assert _rel_err(dx, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, *args)) <= TOL
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("where", ["x", "w"])
def test_one_image_cout_split_propagates_nan(winograd, where):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    try:
        rng = np.random.default_rng(17)
        args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
        x, wt, b = _inputs(rng, 1, 12, 12, 96, 128, False)
        if where == "x":
            x[0, 5, 6, 7] = np.nan  # reaches exactly the 3x3 window of outputs around it
        else:
            wt[1, 1, 3, 40] = np.nan  # reaches every output of channel 40
        y = _C.conv2d_forward(x, wt, None, *args)
        nan = np.isnan(y[0])
        if where == "x":
            expect = np.zeros((12, 12, 128), bool)
            expect[4:7, 5:8, :] = True
        else:
            expect = np.zeros((12, 12, 128), bool)
            expect[:, :, 40] = True
        np.testing.assert_array_equal(nan, expect)
    finally:
        fastconv.set_num_threads(before)
