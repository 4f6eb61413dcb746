"""The direct small-channel convolution (csrc/cpu/direct_conv.cpp) against the float64 oracle.

Every shape here is one the dispatcher sends to the direct path (asserted through
conv_algorithm), so these exercise its edge handling: column tails (W not a multiple of
16, W < 16), strides larger than the kernel, dilation, even kernels with asymmetric pads,
pads wider than the kernel, all three passes with and without bias.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from fastconv import _C
from fastconv import reference as R
from threads_used import conv_pass_threads


def _uses_direct(*conv, passes=("forward", "backward_data", "backward_weights")):
    """True when the given passes of this conv (x_shape, w_shape, strides, pads, dilation,
    groups) run on the direct kernel."""
    algos = _C.conv_algorithm(*conv)
    return all(algos[p] == "direct" for p in passes)



def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


def _rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def _run(x, w, b, dy, args, with_bias):
    y = _C.conv2d_forward(x, w, b, *args)
    dx = _C.conv2d_backward_data(dy, w, x.shape, *args)
    dw, db = _C.conv2d_backward_weights(dy, x, w.shape, *args, with_bias)
    return y, dx, dw, db


def _check(seed, n, h, w, cin, cout, k, strides, pads, dilation, bias=True):
    """All three passes on the direct kernel against the oracle. The cases include shapes
    where 'auto' sends a backward pass to im2col, so the setting is 'direct' meanwhile."""
    saved = _C.get_conv_algorithm()
    _C.set_conv_algorithm("direct")
    try:
        _check_direct(seed, n, h, w, cin, cout, k, strides, pads, dilation, bias)
    finally:
        _C.set_conv_algorithm(saved)


def _check_direct(seed, n, h, w, cin, cout, k, strides, pads, dilation, bias):
    args = (strides, pads, dilation, 1)
    assert _uses_direct((n, h, w, cin), (k[0], k[1], cin, cout), *args)
    rng = np.random.default_rng(seed)
    x, wt = _rand(rng, (n, h, w, cin)), _rand(rng, (k[0], k[1], cin, cout))
    b = _rand(rng, (cout,)) if bias else None
    ref_y = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                             None if b is None else b.astype(np.float64), *args)
    dy = _rand(rng, ref_y.shape)
    y, dx, dw, db = _run(x, wt, b, dy, args, bias)
    _close(y, ref_y)
    _close(dx, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, *args))
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), wt.shape,
                                         *args, bias)
    _close(dw, rdw)
    if bias:
        _close(db, rdb)
    else:
        assert db is None


# name: (n, h, w, cin, cout, (kh, kw), strides, (top, bottom, left, right), dilation)
CASES = {
    "lenet_conv1": (3, 28, 28, 1, 6, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    "lenet_conv2": (2, 14, 14, 6, 16, (5, 5), (1, 1), (0, 0, 0, 0), (1, 1)),
    "batch1_odd": (1, 9, 7, 3, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "w_lt_16": (2, 5, 3, 2, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "w_tail": (2, 6, 37, 4, 7, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "w_exact_32": (1, 4, 32, 2, 3, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "stride_gt_kernel": (2, 11, 19, 2, 3, (2, 2), (3, 4), (0, 0, 0, 0), (1, 1)),
    "stride2": (2, 13, 29, 3, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    "stride3_asym": (1, 17, 40, 2, 5, (4, 5), (3, 2), (1, 2, 2, 1), (1, 1)),
    "dilation2": (2, 12, 21, 3, 4, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    "dilation_stride": (2, 15, 23, 2, 6, (3, 2), (2, 3), (2, 1, 1, 2), (2, 3)),
    "even_kernel_asym": (2, 8, 18, 3, 5, (4, 2), (1, 1), (1, 2, 0, 1), (1, 1)),
    "pads_wider_than_kernel": (1, 5, 6, 2, 2, (2, 2), (2, 2), (3, 4, 4, 3), (1, 1)),
    "one_by_one_strided": (2, 7, 20, 5, 9, (1, 1), (2, 1), (0, 0, 0, 0), (1, 1)),
    "cin8_cout32": (2, 9, 17, 8, 32, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "cin3_cout64_s2": (2, 21, 23, 3, 64, (7, 7), (2, 2), (2, 3, 2, 3), (1, 1)),
    "cout1": (2, 10, 33, 3, 1, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    "cout13_blocks": (1, 6, 20, 2, 13, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "stem_like": (1, 30, 30, 3, 24, (7, 7), (2, 2), (2, 3, 2, 3), (1, 1)),
    "window_barely_fits": (2, 4, 3, 2, 3, (5, 4), (1, 1), (1, 0, 0, 1), (1, 1)),
    # Cout a multiple of 16 and OW mod 16 in 1..12: the forward runs vectorised over channels
    "channels_dilation": (1, 13, 19, 3, 16, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    "channels_col_blocks": (2, 5, 44, 2, 32, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "channels_stride2_even": (1, 9, 15, 1, 16, (4, 4), (2, 2), (1, 2, 1, 2), (1, 1)),
    # The avx2 and baseline levels vectorise over 8 and 4 lanes (direct_conv.cpp, kLanes):
    # Cout 8 or 24 with OW mod 8 in 1..6 take the channel path there, the row path at avx512;
    # Cin 12 > the 6-channel blocks of 2-vector rows at avx2 (backward data's channel blocks)
    "channels_lanes8_cout8": (2, 7, 11, 3, 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "channels_lanes8_cout24_s2": (1, 15, 27, 6, 24, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1)),
    "cin12_wide_rows": (1, 6, 21, 12, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    # Cout % 16 == 0 below AVX-512: two channel vectors per pixel, one row per block; OW 13
    # (5 columns over 8-lane vectors; the row path at avx512) and 20 (blocks of 5 and 5 of 6)
    "channels_two_vectors_cout48": (2, 9, 13, 5, 48, (5, 3), (1, 1), (2, 2, 1, 1), (1, 1)),
    "channels_two_vectors_col_blocks": (1, 7, 20, 4, 32, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("bias", [True, False])
def test_direct_cases(name, bias):
    _check(11, *CASES[name], bias=bias)


@st.composite
def direct_configs(draw):
    kh, kw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = tuple(draw(st.integers(0, 4)) for _ in range(4))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 40))
    assume(h + pads[0] + pads[1] >= (kh - 1) * dh + 1 and w + pads[2] + pads[3] >= (kw - 1) * dw + 1)
    strides = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    assume((kh, kw, strides, pads) != (1, 1, (1, 1), (0, 0, 0, 0)))  # pointwise: GEMM
    return (draw(st.integers(1, 3)), h, w, draw(st.integers(1, 8)), draw(st.integers(1, 64)),
            (kh, kw), strides, pads, (dh, dw))


@settings(max_examples=40, deadline=None)
@given(direct_configs(), st.booleans(), st.integers(0, 2**32 - 1))
def test_direct_random_shapes(cfg, bias, seed):
    _check(seed, *cfg, bias=bias)


def test_threaded_large():
    """Big enough to run on every thread (>= 2^23 multiply-adds, the direct kernel's cutoff),
    with rows of several images per thread."""
    cases = [((96, 28, 28, 1), (5, 5, 1, 6), (1, 1), (2, 2, 2, 2)),
             ((1, 560, 160, 3), (3, 3, 3, 8), (2, 1), (1, 1, 1, 1))]  # one image, split rows
    old = _C.get_num_threads()
    try:
        for t in (1, 2):
            _C.set_num_threads(t)
            for (n, h, w, cin), (kh, kw, _, cout), s, p in cases:
                _check(5, n, h, w, cin, cout, (kh, kw), s, p, (1, 1))
        for xs, ws, s, p in cases:
            assert _uses_direct(xs, ws, s, p, (1, 1), 1)
            used = conv_pass_threads(np.ones(xs, np.float32), np.ones(ws, np.float32), s, p, (1, 1), 1)
            assert min(used.values()) >= 2, (xs, used)
    finally:
        _C.set_num_threads(old)


def test_deterministic():
    rng = np.random.default_rng(2)
    x, w, b = _rand(rng, (64, 28, 28, 1)), _rand(rng, (5, 5, 1, 6)), _rand(rng, (6,))
    args = ((1, 1), (2, 2, 2, 2), (1, 1), 1)
    dy = _rand(rng, (64, 28, 28, 6))
    first = _run(x, w, b, dy, args, True)
    for _ in range(3):
        for a, c in zip(first, _run(x, w, b, dy, args, True)):
            assert np.array_equal(a, c)


def test_empty_batch():
    x, w = np.zeros((0, 9, 9, 2), np.float32), np.ones((3, 3, 2, 4), np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    y, dx, dw, db = _run(x, w, None, np.zeros((0, 9, 9, 4), np.float32), args, True)
    assert y.shape == (0, 9, 9, 4) and dx.shape == x.shape
    assert dw.shape == w.shape and not dw.any() and not db.any()


@pytest.mark.parametrize("x_shape,w_shape,strides,groups,expected", [
    ((256, 28, 28, 1), (5, 5, 1, 6), (1, 1), 1, True),     # LeNet conv1
    ((256, 14, 14, 6), (5, 5, 6, 16), (1, 1), 1, True),    # LeNet conv2
    ((8, 32, 32, 3), (3, 3, 3, 32), (1, 1), 1, True),      # 3 -> 32 first layer
    ((8, 32, 32, 8), (3, 3, 8, 64), (1, 1), 1, True),      # forward only: Cout 64
    ((8, 32, 32, 8), (3, 3, 8, 96), (1, 1), 1, False),     # Cout 96: GEMM
    ((8, 32, 32, 16), (3, 3, 16, 16), (1, 1), 1, False),   # Cin 16: GEMM
    ((8, 32, 32, 8), (3, 3, 4, 8), (1, 1), 2, False),      # grouped
    ((8, 32, 32, 4), (3, 3, 1, 4), (1, 1), 4, False),      # depthwise has its own kernel
])
def test_eligibility(x_shape, w_shape, strides, groups, expected):
    assert _uses_direct(x_shape, w_shape, strides, (1, 1, 1, 1), (1, 1), groups, passes=("forward",)) is expected
    # The backward passes stay direct up to Cout 32 (im2col wins from 64, see direct_conv.cpp).
    backward = expected and w_shape[3] <= 32
    assert _uses_direct(x_shape, w_shape, strides, (1, 1, 1, 1), (1, 1), groups,
                        passes=("backward_data", "backward_weights")) is backward


def test_resnet_stem_backward_passes_use_im2col():
    algos = _C.conv_algorithm((8, 224, 224, 3), (7, 7, 3, 64), (2, 2), (2, 3, 2, 3), (1, 1), 1)
    assert algos == {"forward": "direct", "backward_data": "im2col", "backward_weights": "im2col"}


def test_pointwise_stays_on_gemm():
    # 1x1, stride 1, no pads, more than 16 channels on a side: x is already the GEMM operand.
    assert not _uses_direct((8, 16, 16, 4), (1, 1, 4, 32), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert not _uses_direct((8, 16, 16, 24), (1, 1, 24, 16), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    # <= 16 each side: the per-pixel map (narrow_pointwise.cpp, tests/test_few_channel_conv.py)
    assert _uses_direct((8, 16, 16, 4), (1, 1, 4, 16), (1, 1), (0, 0, 0, 0), (1, 1), 1)


@pytest.mark.parametrize("name", ["lenet_conv1", "stride3_asym", "cin8_cout32"])
def test_forced_modes_agree(name):
    """set_conv_algorithm('im2col') (GEMM) and the direct path give the same results;
    'direct' forces it for a shape the rule leaves to the GEMM."""
    n, h, w, cin, cout, k, s, p, d = CASES[name]
    args = (s, p, d, 1)
    rng = np.random.default_rng(4)
    x, wt, b = _rand(rng, (n, h, w, cin)), _rand(rng, (k[0], k[1], cin, cout)), _rand(rng, (cout,))
    dy = _rand(rng, _C.conv2d_forward(x, wt, b, *args).shape)
    try:
        _C.set_conv_algorithm("im2col")
        assert not _uses_direct(x.shape, wt.shape, *args)
        gemm = _run(x, wt, b, dy, args, True)
        _C.set_conv_algorithm("auto")
        direct = _run(x, wt, b, dy, args, True)
    finally:
        _C.set_conv_algorithm("auto")
    for a, c in zip(direct, gemm):
        _close(a, c.astype(np.float64))
    try:
        _C.set_conv_algorithm("direct")
        assert _uses_direct((2, 9, 9, 16), (3, 3, 16, 80), (1, 1), (1, 1, 1, 1), (1, 1), 1)
        _check(3, 2, 9, 9, 16, 80, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))
    finally:
        _C.set_conv_algorithm("auto")


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
def test_forward_applies_the_activation_to_every_row_block(act):
    """The direct forward applies the activation per work item (its rows of one image):
    several images, and one image split into row blocks over 1 and 2 threads."""
    fns = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh}
    cases = [((5, 28, 28, 1), (5, 5, 1, 6), (1, 1), (2, 2, 2, 2)),
             ((1, 160, 140, 3), (3, 3, 3, 8), (2, 1), (1, 1, 1, 1))]
    rng = np.random.default_rng(17)
    old = _C.get_num_threads()
    try:
        for t in (1, 2):
            _C.set_num_threads(t)
            for xs, ws, s, p in cases:
                assert _uses_direct(xs, ws, s, p, (1, 1), 1, passes=("forward",))
                x, w, b = _rand(rng, xs), _rand(rng, ws), _rand(rng, ws[3:])
                ref = fns[act](R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                                s, p, (1, 1), 1))
                _close(_C.conv2d_forward(x, w, b, s, p, (1, 1), 1, act), ref)
    finally:
        _C.set_num_threads(old)


def test_channel_vectorised_passes_threaded_and_deterministic():
    """Cout 16 (LeNet conv2) and 32: the forward and weight passes vectorised over output
    channels, on 1 and 2 threads against the oracle, and bit-identical when repeated."""
    cases = [((32, 14, 14, 6), (5, 5, 6, 16), (1, 1), (0, 0, 0, 0)),
             ((4, 23, 29, 3), (3, 3, 3, 32), (2, 1), (1, 1, 1, 1))]
    old = _C.get_num_threads()
    try:
        for t in (1, 2):
            _C.set_num_threads(t)
            for (n, h, w, cin), (kh, kw, _, cout), s, p in cases:
                _check(9, n, h, w, cin, cout, (kh, kw), s, p, (1, 1))
                rng = np.random.default_rng(4)
                x, wt = _rand(rng, (n, h, w, cin)), _rand(rng, (kh, kw, cin, cout))
                args = (s, p, (1, 1), 1)
                dy = _rand(rng, _C.conv2d_forward(x, wt, None, *args).shape)
                first = _run(x, wt, None, dy, args, True)
                for a, c in zip(first, _run(x, wt, None, dy, args, True)):
                    assert np.array_equal(a, c)
    finally:
        _C.set_num_threads(old)
