"""Depthwise conv kernels (groups == C, weights (KH, KW, 1, C*M)) against the float64 oracle.

The fast paths (M == 1) split channels into 16-lane blocks with a masked tail, take the
borders apart from the interior, flip the kernel for stride-1 backward data and stream large
outputs; the cases below aim at each of those seams. Tolerances as in test_native_conv.py.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from threads_used import conv_pass_threads


def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


def _check(rng, n, h, w, c, m, k, strides, pads, dilation, bias=True):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((k[0], k[1], 1, c * m)).astype(np.float32)
    b = rng.standard_normal(c * m).astype(np.float32) if bias else None
    args = (strides, pads, dilation, c)
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y = _C.conv2d_forward(x, wt, b, *args)
    _close(y, R.conv2d_forward(x64, w64, None if b is None else b.astype(np.float64), *args))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    _close(dx, R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, bias)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, bias)
    _close(dw, rdw)
    if bias:
        _close(db, rdb)


# (n, h, w, c, m, (kh, kw), strides, (top, bottom, left, right), dilation)
CASES = [
    (2, 9, 11, 16, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    (1, 7, 5, 1, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    (1, 13, 9, 37, 1, (3, 3), (2, 2), (0, 1, 0, 1), (1, 1)),
    (2, 8, 8, 80, 1, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    (1, 11, 7, 20, 1, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    (1, 9, 10, 33, 1, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    (2, 6, 7, 17, 1, (2, 2), (1, 1), (0, 1, 1, 0), (1, 1)),
    (1, 7, 9, 15, 1, (3, 3), (1, 2), (3, 0, 0, 2), (1, 1)),
    (1, 5, 5, 3, 1, (3, 3), (1, 1), (4, 3, 3, 4), (1, 1)),   # pads wider than the kernel
    (1, 3, 4, 48, 1, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),  # no interior column
    (1, 9, 7, 5, 2, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    (2, 8, 9, 19, 3, (3, 3), (2, 2), (0, 1, 0, 1), (1, 1)),
    (1, 7, 7, 16, 2, (2, 2), (1, 1), (1, 0, 0, 1), (2, 1)),
    (1, 12, 12, 64, 1, (7, 1), (1, 1), (3, 3, 0, 0), (1, 1)),
]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("bias", [True, False])
def test_depthwise_cases(case, bias):
    _check(np.random.default_rng(3), *case, bias=bias)


def test_depthwise_random_shapes():
    rng = np.random.default_rng(11)
    for _ in range(40):
        k = [(3, 3), (5, 5), (2, 2), (3, 3)][rng.integers(4)]
        s = int(rng.integers(1, 3))
        d = int(rng.integers(1, 3)) if s == 1 else 1
        pads = tuple(int(p) for p in rng.integers(0, 3, 4))
        h, w = int(rng.integers(1, 12)) * 2 + 1, int(rng.integers(1, 12)) * 2 + 1
        if h + pads[0] + pads[1] < (k[0] - 1) * d + 1 or w + pads[2] + pads[3] < (k[1] - 1) * d + 1:
            continue
        _check(rng, int(rng.integers(1, 3)), h, w, int(rng.integers(1, 81)), int(rng.integers(1, 4)),
               k, (s, s), pads, (d, d), bias=bool(rng.integers(2)))


@pytest.mark.parametrize("threads", [1, 2])
def test_depthwise_large_streamed(threads):
    """Big enough to run threaded and above the streaming threshold when it is lowered."""
    old_t, old_s = _C.get_num_threads(), _C.get_stream_threshold()
    try:
        _C.set_num_threads(threads)
        _C.set_stream_threshold(1 << 12)
        rng = np.random.default_rng(5)
        _check(rng, 3, 17, 19, 40, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))
        _check(rng, 3, 33, 37, 40, 1, (3, 3), (2, 2), (0, 1, 0, 1), (1, 1))
        if threads > 1:  # every pass of both cases is above the kernels' kParallelGrain
            for x_shape, s, p in (((3, 17, 19, 40), (1, 1), (1, 1, 1, 1)),
                                  ((3, 33, 37, 40), (2, 2), (0, 1, 0, 1))):
                used = conv_pass_threads(np.ones(x_shape, np.float32), np.ones((3, 3, 1, 40), np.float32),
                                         s, p, (1, 1), 40)
                assert min(used.values()) >= 2, (x_shape, used)
    finally:
        _C.set_num_threads(old_t)
        _C.set_stream_threshold(old_s)


def test_depthwise_deterministic():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 30, 30, 48)).astype(np.float32)
    dy = rng.standard_normal((4, 30, 30, 48)).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 48)
    first = _C.conv2d_backward_weights(dy, x, (3, 3, 1, 48), *args, True)
    for _ in range(3):
        again = _C.conv2d_backward_weights(dy, x, (3, 3, 1, 48), *args, True)
        assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])


def _ref_forward(x, wt, b, args, activation):
    """The float64 oracle's forward; relu6 (which it does not take) as min(relu, 6)."""
    z = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None if b is None else b.astype(np.float64),
                         *args, "relu" if activation == "relu6" else activation)
    return np.minimum(z, 6.0) if activation == "relu6" else z


# The forward's 3x3 stride-1/2 rows go in tiles of 4 columns (2 below AVX-512) with the
# narrower last tile and the padded edges checked tap by tap, and apply relu/relu6 in
# registers (other activations on each row after it): widths 1..10 cover every tile
# width and edge combination, C 1..33 full and masked blocks.
@pytest.mark.parametrize("activation", ["linear", "relu", "relu6", "sigmoid", "tanh"])
def test_depthwise_forward_tiles_and_activations(activation):
    rng = np.random.default_rng(21)
    for width in range(1, 11):
        for s, pads in (((1, 1), (1, 1, 1, 1)), ((2, 2), (0, 1, 0, 1)), ((2, 2), (1, 1, 1, 1)),
                        ((1, 1), (0, 0, 0, 0)), ((1, 2), (2, 0, 0, 2))):
            h = int(rng.integers(3, 8))
            c = int(rng.choice([1, 5, 16, 17, 32, 33]))
            if width + pads[2] + pads[3] < 3 or h + pads[0] + pads[1] < 3:
                continue
            n = int(rng.integers(1, 3))
            x = (3 * rng.standard_normal((n, h, width, c))).astype(np.float32)
            wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
            b = rng.standard_normal(c).astype(np.float32) if rng.integers(2) else None
            args = (s, pads, (1, 1), c)
            y = _C.conv2d_forward(x, wt, b, *args, activation)
            ref = _ref_forward(x, wt, b, args, activation)
            _close(y, ref)
            if activation == "relu6":  # the cap is reached: the clamp is exercised
                assert (y == 6.0).any() or (ref < 6.0).all()


@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_depthwise_forward_activation_keeps_nan(activation):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 6, 9, 20)).astype(np.float32)
    x[0, 2, 4, 3] = np.nan
    wt = rng.standard_normal((3, 3, 1, 20)).astype(np.float32)
    y = _C.conv2d_forward(x, wt, None, (1, 1), (1, 1, 1, 1), (1, 1), 20, activation)
    nan = np.isnan(y)
    assert nan[0, 1:4, 3:6, 3].all() and nan.sum() == 9  # the 3x3 outputs that read it
    ref = _ref_forward(x, wt, None, ((1, 1), (1, 1, 1, 1), (1, 1), 20), activation)
    _close(np.where(nan, 0, y), np.where(nan, 0, ref).astype(np.float64))


@pytest.mark.parametrize("threads", [1, 2])
def test_depthwise_forward_streamed(threads):
    """Threaded and streamed (the activation on the row buffer before it is streamed out) or not."""
    old_t, old_s = _C.get_num_threads(), _C.get_stream_threshold()
    rng = np.random.default_rng(8)
    try:
        _C.set_num_threads(threads)
        for threshold in (old_s, 1 << 12):
            _C.set_stream_threshold(threshold)
            for s, pads in (((1, 1), (1, 1, 1, 1)), ((2, 2), (0, 1, 0, 1))):
                x = (3 * rng.standard_normal((2, 45, 43, 36))).astype(np.float32)
                wt = rng.standard_normal((3, 3, 1, 36)).astype(np.float32)
                b = rng.standard_normal(36).astype(np.float32)
                for activation in ("relu6", "sigmoid"):
                    y = _C.conv2d_forward(x, wt, b, s, pads, (1, 1), 36, activation)
                    _close(y, _ref_forward(x, wt, b, (s, pads, (1, 1), 36), activation))
    finally:
        _C.set_num_threads(old_t)
        _C.set_stream_threshold(old_s)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c", [16, 48])
def test_depthwise_forward_streamed_from_registers(threads, c):
    """Streamed outputs with C a multiple of 16 (AVX-512: the 3x3 tiles store straight from
    their registers by non-temporal stores, and the input rows ahead are requested into L2):
    against the oracle, bit-identical to the unstreamed result, with NaN/inf in the input
    (edge and interior) landing where they do unstreamed; widths 1..9 end in tiles of
    every width; batch 1 (the item team at 2 threads) and 2."""
    old_t, old_s = _C.get_num_threads(), _C.get_stream_threshold()
    rng = np.random.default_rng(c + threads)
    try:
        _C.set_num_threads(threads)
        for width in (1, 2, 3, 5, 9, 30):
            for s, pads in (((1, 1), (1, 1, 1, 1)), ((2, 2), (0, 1, 0, 1)), ((2, 2), (1, 1, 1, 1))):
                if width + pads[2] + pads[3] < 3:
                    continue
                n = 1 + width % 2
                x = (3 * rng.standard_normal((n, 41, width, c))).astype(np.float32)
                x[0, 0, 0, 1] = np.nan
                x[n - 1, 20, width // 2, c - 1] = np.inf
                wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
                b = rng.standard_normal(c).astype(np.float32)
                args = (s, pads, (1, 1), c)
                for activation in ("linear", "relu", "relu6"):
                    _C.set_stream_threshold(old_s)
                    plain = _C.conv2d_forward(x, wt, b, *args, activation)
                    _C.set_stream_threshold(0)
                    y = _C.conv2d_forward(x, wt, b, *args, activation)
                    assert np.array_equal(y, plain, equal_nan=True)
                    with np.errstate(invalid="ignore"):
                        ref = _ref_forward(x, wt, b, args, activation)
                    assert np.isnan(ref).any()
                    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
                    np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
                    finite = np.isfinite(ref)
                    _close(np.where(finite, y, 0), np.where(finite, ref, 0))
    finally:
        _C.set_num_threads(old_t)
        _C.set_stream_threshold(old_s)


# 3x3 stride-1 'same' with C < 16 (csrc/cpu/depthwise_flat.cpp at AVX-512: vectors along the
# flat row, C / gcd(16, C) weight patterns, masked edge taps): every pattern count, rows
# shorter than one vector (W*C < 16), odd sizes, batch 1 and 3.
@pytest.mark.parametrize("c", [1, 2, 3, 5, 6, 7, 8, 12, 15])
@pytest.mark.parametrize("nhw", [(1, 7, 5), (3, 9, 11), (2, 1, 2), (1, 16, 33)])
def test_depthwise_flat_few_channels(c, nhw):
    rng = np.random.default_rng(1000 * c + nhw[1] * 37 + nhw[2])
    _check(rng, *nhw, c, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the oracle's 0 * inf
@pytest.mark.parametrize("c", [3, 6])
def test_depthwise_flat_inf_weight_and_nan_input_as_the_oracle(c):
    """The padding is zeros multiplied like any input, as in the oracle and at every level:
    an inf weight on a tap that reads the padding makes those border outputs NaN (0 * inf),
    the others inf. A NaN input reaches exactly the 3x3 outputs around it. (Backward data
    with an inf weight is left out: the oracle scatters, the kernels at every level gather
    over a zero border, and the two disagree there.)"""
    rng = np.random.default_rng(c)
    x = rng.uniform(0.5, 1.0, (2, 6, 7, c)).astype(np.float32)
    w = rng.uniform(0.5, 1.0, (3, 3, 1, c)).astype(np.float32)
    w[0, 0, 0, c - 1] = np.inf  # tap (-1, -1): reads the padding in the first row and column
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    y = _C.conv2d_forward(x, w, None, *args)
    ref = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, *args)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref))
    assert np.isnan(y[:, 0, :, c - 1]).all() and np.isposinf(y[:, 1:, 1:, c - 1]).all()
    x[1, 3, 4, 1] = np.nan
    y = _C.conv2d_forward(x, np.where(np.isinf(w), 1.0, w).astype(np.float32), None, *args)
    assert np.isnan(y[1, 2:5, 3:6, 1]).all() and np.isnan(y).sum() == 9


@pytest.mark.parametrize("c", [3, 6])
def test_depthwise_flat_two_threads(c, two_threads):
    """The flat path's lines split over two threads: the oracle on every pass, the weight
    pass's thread partials included (large enough to run threaded: > 32K floats)."""
    rng = np.random.default_rng(77 + c)
    _check(rng, 4, 33, 29, c, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))


# The flat forward (and backward data, the same pass on dy) steps S floats, the largest
# multiple of C up to 16 (C = 3: 15, C = 6: 12, C = 9: 9), plain loads in the row's interior
# and masked ones where a tap reaches past either row end: rows of exactly one and two steps
# (W*C = S, 2S), one float past a step, rows with no interior vector and with several. The
# weight pass steps 15 floats for C = 3, 5, 15 on rows of up to 256 floats, 16 above (3x85,
# 3x86, 5x51, 5x52, 15x17, 15x18 on either side: a wrong channel for a lane would show in dw).
@pytest.mark.parametrize("c, w", [(3, 5), (3, 10), (3, 11), (3, 40), (3, 85), (3, 86), (5, 51), (5, 52), (15, 17), (15, 18), (6, 2), (6, 4), (6, 5), (6, 21),
                                  (9, 1), (9, 3), (10, 8), (11, 3), (13, 5), (14, 9), (7, 2), (5, 3)])
def test_depthwise_flat_steps(c, w):
    rng = np.random.default_rng(31 * c + w)
    _check(rng, 2, 5, w, c, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))


@pytest.mark.parametrize("c, w", [(3, 11), (6, 5), (9, 3), (3, 1)])
def test_depthwise_flat_nan_at_row_ends(c, w):
    """A NaN input in a row's first or last pixel (the masked edge vectors) reaches exactly
    the outputs whose 3x3 window holds it (2 columns x 3 rows, fewer at the image's edge), in
    its own channel; an inf in dy reaches dx the same way."""
    rng = np.random.default_rng(c + w)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    wt = rng.uniform(0.5, 1.0, (3, 3, 1, c)).astype(np.float32)
    for col in (0, w - 1):
        x = rng.uniform(0.5, 1.0, (2, 5, w, c)).astype(np.float32)
        x[1, 2, col, c - 1] = np.nan
        y = _C.conv2d_forward(x, wt, None, *args)
        ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *args)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
        assert np.isnan(y).sum() == 3 * min(w, 2 if w > 1 else 1) and np.isnan(y[1, 1:4, :, c - 1]).any()
        dy = x.copy()
        dy[1, 2, col, c - 1] = np.inf
        dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
        rdx = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, *args)
        np.testing.assert_array_equal(np.isposinf(dx), np.isposinf(rdx))
        assert np.isposinf(dx).sum() == 3 * min(w, 2) and np.isfinite(dx[0]).all()



# The weight pass on rows under 16 pixels with C <= 32 keeps its sums over groups of up to
# 64 pixels' rows (7x7: 9 rows, so groups straddle images; 13 wide: 4), flushing the float
# partials before they would hold more than 16 rows: full and masked channel blocks, 3x3 and
# other kernels, stride 2, a short last group.
@pytest.mark.parametrize("n, h, w, c, k, s", [(5, 7, 7, 24, (3, 3), (1, 1)), (3, 7, 7, 16, (3, 3), (1, 1)),
                                              (2, 13, 13, 32, (3, 3), (1, 1)), (4, 9, 5, 20, (5, 5), (1, 1)),
                                              (3, 14, 14, 8, (3, 3), (2, 2))])
def test_depthwise_weights_row_groups(n, h, w, c, k, s):
    rng = np.random.default_rng(n * 1000 + h * 10 + c)
    pads = ((k[0] - 1) // 2, k[0] // 2, (k[1] - 1) // 2, k[1] // 2)
    _check(rng, n, h, w, c, 1, k, s, pads, (1, 1))


def test_depthwise_weights_row_groups_two_threads(two_threads):
    """Groups of rows within each thread's share of lines (over 32K floats: threaded)."""
    _check(np.random.default_rng(9), 96, 7, 7, 24, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))


# The weight pass for 3x3 stride 1 with C > 32, or C >= 16 on rows of 16 pixels and more
# (depthwise_weights.cpp weights_pair; C < 16 is depthwise_flat.cpp's): consecutive
# output rows in pairs sharing their input rows, a row whose next does not continue it (an
# odd image height, the thread's last row) alone: odd and even heights, one-row images,
# W = 1 and 2 (no interior column), 'same' (even and odd sizes), 'valid', pads wider than the
# kernel (zero rows paired across images), a masked tail block (C = 33, 47), with and without db.
@pytest.mark.parametrize("n, h, w, c, pads", [
    (2, 7, 7, 33, (1, 1, 1, 1)), (1, 8, 5, 48, (1, 1, 1, 1)), (3, 1, 9, 40, (1, 1, 1, 1)),
    (2, 5, 1, 64, (1, 1, 1, 1)), (1, 6, 2, 47, (1, 1, 1, 1)), (2, 9, 11, 33, (0, 0, 0, 0)),
    (1, 10, 12, 96, (0, 1, 0, 1)), (3, 2, 3, 35, (2, 2, 2, 2)), (1, 13, 6, 512, (1, 1, 1, 1)),
    (1, 9, 17, 16, (1, 1, 1, 1)), (2, 5, 16, 24, (0, 1, 0, 1)), (1, 4, 20, 20, (1, 1, 1, 1))])
@pytest.mark.parametrize("bias", [True, False])
def test_depthwise_weights_row_pairs(n, h, w, c, pads, bias):
    rng = np.random.default_rng(n * 1000 + h * 10 + c + bias)
    _check(rng, n, h, w, c, 1, (3, 3), (1, 1), pads, (1, 1), bias)


def test_depthwise_weights_row_pairs_two_threads(two_threads):
    """The threads' shares of lines (35 lines: 17 and 18) start pairs mid-image."""
    _check(np.random.default_rng(11), 5, 7, 7, 200, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))


@pytest.mark.parametrize("row", [0, 2, 4])
def test_depthwise_weights_row_pairs_nan_reaches_its_taps(row):
    """A NaN input in one pixel of channel 39 (C = 40, the masked tail block) reaches exactly
    the taps that read it, whether its output rows run as a pair's (rows 0-3 of a 5-row image)
    or as the odd row alone (row 4); the clean input against the oracle."""
    rng = np.random.default_rng(row)
    c, w = 40, 6
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    for col, bad_kx in ((w // 2, []), (0, [2]), (w - 1, [0])):
        bad_ky = {0: [2], 4: [0]}.get(row, [])
        x = rng.uniform(0.5, 1.0, (2, 5, w, c)).astype(np.float32)
        x[1, row, col, c - 1] = np.nan
        dy = rng.uniform(0.5, 1.0, x.shape).astype(np.float32)
        dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, 1, c), *args, True)
        nan = np.isnan(dw[:, :, 0, :])
        expect = np.zeros_like(nan)
        expect[:, :, c - 1] = True
        for kx in bad_kx:
            expect[:, kx, c - 1] = False
        for ky in bad_ky:
            expect[ky, :, c - 1] = False
        np.testing.assert_array_equal(nan, expect)
        assert np.isfinite(db).all()
        clean = np.where(np.isnan(x), 0.0, x).astype(np.float32)
        rdw, _ = R.conv2d_backward_weights(dy.astype(np.float64), clean.astype(np.float64), (3, 3, 1, c), *args, True)
        dwc, _ = _C.conv2d_backward_weights(dy, clean, (3, 3, 1, c), *args, True)
        _close(dwc, rdw)


@pytest.mark.parametrize("c, w", [(3, 14), (6, 14), (3, 28), (6, 9), (5, 40), (6, 20), (3, 90)])
def test_depthwise_flat_weights_nan_reaches_its_taps(c, w):
    """The flat weight pass (the image stream for rows up to 256 floats, 96 for C = 6; the
    row walk above, 6 x 20 and 3 x 90) loads its interior vectors plainly and the row-end ones
    masked: a NaN input in one pixel of channel c - 1 reaches exactly the taps that read it
    (all 9 from a column inside the row, the 6 with kx <= 1 from the first column, kx >= 1
    from the last), in its own channel only; db never sees x."""
    rng = np.random.default_rng(7 * c + w)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    for col, bad_kx in ((w // 2, []), (0, [2]), (w - 1, [0])):
        x = rng.uniform(0.5, 1.0, (2, 5, w, c)).astype(np.float32)
        x[1, 2, col, c - 1] = np.nan
        dy = rng.uniform(0.5, 1.0, x.shape).astype(np.float32)
        dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, 1, c), *args, True)
        nan = np.isnan(dw[:, :, 0, :])
        expect = np.zeros_like(nan)
        expect[:, :, c - 1] = True
        for kx in bad_kx:
            expect[:, kx, c - 1] = False
        np.testing.assert_array_equal(nan, expect)
        assert np.isfinite(db).all()
        clean = np.where(np.isnan(x), 0.0, x).astype(np.float32)
        rdw, _ = R.conv2d_backward_weights(dy.astype(np.float64), clean.astype(np.float64), (3, 3, 1, c), *args, True)
        dwc, _ = _C.conv2d_backward_weights(dy, clean, (3, 3, 1, c), *args, True)
        _close(dwc, rdw)


# Rows of 16 to 256 floats run the flat forward, backward data and weight pass (C = 6 etc. up
# to 96 floats) as one stream per thread's rows (depthwise_flat.cpp image_stream,
# weights_stream): masks from each lane's place in its row and image, column masks only where
# the 16 lanes have rows above and below. Both ends of the rule
# (W*C = 16 and 256 stream, 258 takes the row walk), one-row images (every vector at an image
# edge), steps of 12, 13, 15 floats ending mid-step, batch 1 and several images per stream.
@pytest.mark.parametrize("n, h, w, c", [(1, 1, 16, 1), (3, 1, 17, 3), (2, 3, 64, 4), (1, 3, 86, 3), (5, 7, 7, 6),
                                        (4, 2, 9, 2), (3, 5, 5, 13), (2, 4, 3, 15), (1, 9, 14, 3), (7, 3, 6, 5)])
def test_depthwise_flat_image_stream(n, h, w, c):
    rng = np.random.default_rng(n * 7 + h * 131 + w * 17 + c)
    _check(rng, n, h, w, c, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))


@pytest.mark.parametrize("c", [3, 6])
@pytest.mark.parametrize("n, h, w", [(67, 14, 14), (1, 301, 41), (3, 101, 15)])
def test_depthwise_flat_image_stream_two_threads(n, h, w, c, two_threads):
    """Each thread streams its own range of rows (over 32K floats: threaded), which may start
    and end inside an image (batch 1: the item team's blocks of rows); a thread's last vector
    stores, and its weight sums take, only its own lanes."""
    _check(np.random.default_rng(5 + c + h), n, h, w, c, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))



# 3x3 stride 1 rows in tiles (depthwise.cpp tiled_row3: 4 columns at AVX-512, 2 below, the
# last narrower; tiles touching a padded edge checked tap by tap): widths 8..26 (every
# remainder after several full tiles), 'same', 'valid' and pads of 2 on one side (a checked
# tile with no tap in the left column); full and masked channel blocks (C = 16, 33, 48);
# batch 1 and 3; forward with and without bias and with relu6 in registers, backward data
# (the same tiles over dy with the flipped kernel) and weights.
@pytest.mark.parametrize("c", [16, 33, 48])
@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (0, 0, 0, 0), (1, 1, 2, 0), (0, 2, 0, 2)])
def test_depthwise_tiles_along_rows(c, pads):
    rng = np.random.default_rng(c * 10 + sum(pads))
    for width in range(8, 27):
        n = 1 + 2 * (width % 2)
        _check(rng, n, 5, width, c, 1, (3, 3), (1, 1), pads, (1, 1), bias=bool(width % 3))
        x = (3 * rng.standard_normal((n, 4, width, c))).astype(np.float32)
        wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        args = ((1, 1), pads, (1, 1), c)
        y = _C.conv2d_forward(x, wt, b, *args, "relu6")
        _close(y, _ref_forward(x, wt, b, args, "relu6"))
        assert (y == 6.0).any() and (y == 0.0).any()


@pytest.mark.parametrize("width", [8, 16, 19])
def test_depthwise_tiles_nan_reaches_its_window(width):
    """A NaN in x at a tile's first, interior and last column (and the next tile's first)
    reaches exactly the 3x3 outputs around it, in its channel, and nothing else; an inf in
    dy reaches its 3x3 window of dx (backward data) as inf."""
    rng = np.random.default_rng(width)
    c = 48
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    wt = rng.uniform(0.5, 1.0, (3, 3, 1, c)).astype(np.float32)
    for col in sorted({0, 3, 4, 7, width - 1}):
        x = rng.uniform(0.5, 1.0, (2, 5, width, c)).astype(np.float32)
        x[1, 2, col, 17] = np.nan
        y = _C.conv2d_forward(x, wt, None, *args)
        expect = np.zeros(y.shape, bool)
        expect[1, 1:4, max(col - 1, 0):col + 2, 17] = True
        np.testing.assert_array_equal(np.isnan(y), expect)
        ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *args)
        _close(np.where(expect, 0, y), np.where(expect, 0, ref))
        dy = x.copy()
        dy[1, 2, col, 17] = np.inf
        dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
        np.testing.assert_array_equal(np.isposinf(dx), expect)
        assert np.isfinite(dx[~expect]).all()


# Inputs of 4 MiB and more with C >= 64 (under the stream threshold) have the tiles request
# the next row's input into L2 (depthwise.cpp gather_pass, far): both sides of the 4 MiB and
# the C = 64 rule, forward and backward data against the oracle, a NaN in the last row of
# the input (the last rows requested) reaching its window, batch 1 and 2.
@pytest.mark.parametrize("shape", [(1, 128, 128, 64), (1, 128, 127, 64), (2, 64, 64, 128), (4, 64, 64, 48),
                                   (1, 91, 89, 160)])
def test_depthwise_large_inputs_requested_ahead(shape):
    assert _C.get_stream_threshold() > 4 * int(np.prod(shape))  # not streamed
    rng = np.random.default_rng(shape[2])
    n, h, w, c = shape
    x = rng.standard_normal(shape).astype(np.float32)
    x[n - 1, h - 1, w // 2, c - 1] = np.nan
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), c)
    y = _C.conv2d_forward(x, wt, b, *args)
    expect = np.zeros(y.shape, bool)
    expect[n - 1, h - 2:, w // 2 - 1:w // 2 + 2, c - 1] = True
    np.testing.assert_array_equal(np.isnan(y), expect)
    x64 = np.where(np.isnan(x), 0, x).astype(np.float64)
    _close(np.where(expect, 0, y), np.where(expect, 0, R.conv2d_forward(x64, wt.astype(np.float64), b.astype(np.float64), *args)))
    dx = _C.conv2d_backward_data(x, wt, x.shape, *args)
    np.testing.assert_array_equal(np.isnan(dx), expect)
    _close(np.where(expect, 0, dx), np.where(expect, 0, R.conv2d_backward_data(x64, wt.astype(np.float64), x.shape, *args)))


def _at_offset(a, offset):
    """A copy of a whose data starts `offset` bytes past a 64-byte line."""
    buf = np.empty(a.size + 32, np.float32)
    start = ((-buf.ctypes.data) % 64 + offset) // 4
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 64 == offset
    return out


# AVX-512, 3x3, C a multiple of 16 from 256 channels: an input whose pixels start 16, 32 or
# 48 bytes past a 64-byte line has the tiles take the 12, 8 or 4 channels before the line
# apart (masked), then whole blocks from the line (depthwise.cpp gather_pass, Gather::head).
# Every offset, forward (stride 1 and 2, bias, relu6 in registers) and backward data, bit-
# identical across the offsets and against the oracle, a NaN in the first and the last
# channel of a pixel reaching its window; the streamed path (direct stores) at every offset.
@pytest.mark.parametrize("c", [256, 512, 48])
def test_depthwise_misaligned_inputs(c):
    rng = np.random.default_rng(c)
    x0 = (3 * rng.standard_normal((2, 6, 9, c))).astype(np.float32)
    x0[1, 2, 4, 0] = np.nan
    x0[0, 5, 8, c - 1] = np.nan
    wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    old_s = _C.get_stream_threshold()
    try:
        for threshold in (old_s, 0):
            _C.set_stream_threshold(threshold)
            for s, pads in (((1, 1), (1, 1, 1, 1)), ((2, 2), (0, 1, 0, 1))):
                args = (s, pads, (1, 1), c)
                outs = []
                for offset in (0, 16, 32, 48):
                    x = _at_offset(x0, offset)
                    y = _C.conv2d_forward(x, wt, b, *args, "relu6")
                    dx = _C.conv2d_backward_data(x, wt, x.shape, *args) if s == (1, 1) else None
                    outs.append((y, dx))
                with np.errstate(invalid="ignore"):
                    ref = _ref_forward(x0, wt, b, args, "relu6")
                    rdx = R.conv2d_backward_data(x0.astype(np.float64), wt.astype(np.float64), x0.shape, *args) \
                        if s == (1, 1) else None
                for y, dx in outs:
                    assert np.array_equal(y, outs[0][0], equal_nan=True)
                    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
                    assert np.isnan(y[1, 1:4, 3:6, 0]).all() if s == (1, 1) else np.isnan(y).any()
                    _close(np.where(np.isnan(ref), 0, y), np.where(np.isnan(ref), 0, ref))
                    if dx is not None:
                        assert np.array_equal(dx, outs[0][1], equal_nan=True)
                        np.testing.assert_array_equal(np.isnan(dx), np.isnan(rdx))
                        _close(np.where(np.isnan(rdx), 0, dx), np.where(np.isnan(rdx), 0, rdx))
    finally:
        _C.set_stream_threshold(old_s)


# The weight pass with C >= 256 (a multiple of 16) on rows of 14 pixels and more, x and dy at
# the same offset past a 64-byte line: the channels up to the line first, masked, the last
# block ending past C in the partial rows (depthwise_weights.cpp, Gather::head). Every
# offset, x and dy at different offsets (no head), rows of 7 (no head) and 14/15 pixels,
# odd heights (the unpaired row), with and without db: bit-identical across the offsets and
# against the oracle; a NaN in dy's first channel and in x's last reaching exactly the
# taps (and db) of their channel.
@pytest.mark.parametrize("n, h, w, c", [(1, 15, 14, 256), (2, 5, 15, 512), (3, 7, 7, 256)])
@pytest.mark.parametrize("bias", [True, False])
def test_depthwise_weights_misaligned_inputs(n, h, w, c, bias):
    rng = np.random.default_rng(n * 100 + w + bias)
    x0 = rng.standard_normal((n, h, w, c)).astype(np.float32)
    dy0 = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wshape, args = (3, 3, 1, c), ((1, 1), (1, 1, 1, 1), (1, 1), c)
    rdw, rdb = R.conv2d_backward_weights(dy0.astype(np.float64), x0.astype(np.float64), wshape, *args, bias)
    first = None
    for ox, od in ((0, 0), (16, 16), (32, 32), (48, 48), (16, 48)):
        dw, db = _C.conv2d_backward_weights(_at_offset(dy0, od), _at_offset(x0, ox), wshape, *args, bias)
        _close(dw, rdw)
        if bias:
            _close(db, rdb)
        if first is None:
            first = (dw, db)
        np.testing.assert_allclose(dw, first[0], rtol=1e-6, atol=1e-6)
        if ox == od:  # same blocks of whole lines or not: each channel's sums in the same order
            assert np.array_equal(dw, first[0])
    x1, dy1 = x0.copy(), dy0.copy()
    dy1[n - 1, h // 2, w // 2, 0] = np.nan
    x1[0, 0, w - 1, c - 1] = np.nan
    dw, db = _C.conv2d_backward_weights(_at_offset(dy1, 16), _at_offset(x1, 16), wshape, *args, bias)
    nan = np.isnan(dw)
    assert nan[:, :, 0, 0].all() and nan[:, :, 0, c - 1].any() and nan.sum() == 9 + nan[:, :, 0, c - 1].sum()
    assert not nan[:, :, 0, 1:c - 1].any()
    if bias:
        assert np.isnan(db[0]) and np.isfinite(db[1:]).all()


def test_depthwise_misaligned_inputs_two_threads(two_threads):
    """The head blocks (tiles and weight pass) with the lines split over two threads (each
    thread's partial rows 16 floats longer): x and dy 16 bytes past a line, against the
    oracle and bit-identical to the aligned inputs' dx and dw at the same thread count."""
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((2, 9, 16, 256)).astype(np.float32)
    dy0 = rng.standard_normal((2, 9, 16, 256)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 256)).astype(np.float32)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 256)
    got = []
    for off in (0, 16):
        x, dy = _at_offset(x0, off), _at_offset(dy0, off)
        got.append((_C.conv2d_backward_data(dy, wt, x.shape, *args),
                    *_C.conv2d_backward_weights(dy, x, wt.shape, *args, True)))
    rdw, rdb = R.conv2d_backward_weights(dy0.astype(np.float64), x0.astype(np.float64), wt.shape, *args, True)
    _close(got[1][0], R.conv2d_backward_data(dy0.astype(np.float64), wt.astype(np.float64), x0.shape, *args))
    _close(got[1][1], rdw)
    _close(got[1][2], rdb)
    for a, b in zip(got[0], got[1]):
        assert np.array_equal(a, b)
