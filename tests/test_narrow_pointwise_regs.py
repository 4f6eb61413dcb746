"""1x1 convs with 5..8 channels each side (every stride) and 3 at stride 2 on the avx2 register
map (csrc/cpu/narrow_pointwise_regs.h, stop 38): a pixel's channels in one ymm, the weight
rows in registers, 8 pixels in flight, then the last count % 8 one at a time; where the pixels
are contiguous each pixel's 8-lane store runs onto the next one, the last pixel of a call stores
exactly its channels. At the other levels the same shapes run the planar / 16-lane maps: these
tests hold at every level. The strided backward data with W = 2 OW writes each grid row as
pixel pairs (the pixel, then the skipped pixel's zeros) instead of zeroing it first.

Against the float64 oracle (conv_oracle.close: rtol 1e-4, atol 1e-5 x the largest magnitude):
forward (bias, relu) and backward data at stride 1 and 2; pixel counts that leave 0..7 pixels
after the groups of 8, batch 1, odd sizes, one pixel; runs across the 1024-pixel work items
with 2 threads; the backward data's skipped pixels exact zeros (outputs start as NaN,
conftest.py); NaN and inf at the first, middle and last pixel of a group and in the tail
reaching exactly the oracle's outputs."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from fastconv.functional._args import resolve_padding
from conv_oracle import close

CHANNELS = [3, 5, 6, 7, 8]
# (n, h, w): stride-1 pixel counts 1, 7, 8, 9, 15, 17, 63 and 1035 (two work items), odd rows
SIZES = [(1, 1, 1), (1, 1, 7), (1, 2, 4), (1, 3, 3), (1, 3, 5), (1, 1, 17), (1, 7, 9), (3, 15, 23)]


def _operands(seed, n, h, w, cin, cout, s):
    strides = (s, s)
    pads = resolve_padding("same", (h, w), (1, 1), strides, (1, 1))
    args = (strides, pads, (1, 1), 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return rng, x, wt, b, args


def _fwd_ref(x, wt, b, args):
    return R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)


def _bwd_ref(dy, wt, x_shape, args):
    return R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args)


def _check(x, wt, b, args, s, rng):
    ref = _fwd_ref(x, wt, b, args)
    y = _C.conv2d_forward(x, wt, b, *args)
    close(y, ref)
    close(_C.conv2d_forward(x, wt, b, *args, "relu"), np.maximum(ref, 0.0))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    close(dx, _bwd_ref(dy, wt, x.shape, args))
    off = np.ones(x.shape[:3], bool)
    off[:, ::s, ::s] = False
    assert np.all(dx[off] == 0.0)


@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("c", CHANNELS)
def test_matches_oracle(c, s):
    for k, (n, h, w) in enumerate(SIZES):
        rng, x, wt, b, args = _operands(10 * c + k, n, h, w, c, c, s)
        _check(x, wt, b, args, s, rng)


@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("c", [3, 6])
@pytest.mark.parametrize("threads", [1, 2])
def test_sweep_shapes_scaled_down(c, s, threads):
    # The sweep's 1x1 C=6 cases (N=256 28x28 / 14x14, N=32 56x56) and C=3 N=32 112x112,
    # scaled down; 2 threads: the 1024-pixel items' edges (a whole store never crosses one)
    old = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        for k, (n, hw) in enumerate([(5, 28), (9, 14), (2, 56), (1, 112)]):
            rng, x, wt, b, args = _operands(900 + 7 * c + k, n, hw, hw, c, c, s)
            _check(x, wt, b, args, s, rng)
    finally:
        _C.set_num_threads(old)


def _check_nonfinite(got, ref):
    bad = ~np.isfinite(ref)
    assert np.array_equal(~np.isfinite(got), bad)
    np.testing.assert_array_equal(got[bad], ref[bad].astype(np.float32))
    close(np.where(bad, 0, got).astype(np.float32), np.where(bad, 0, ref))
    return bad


@pytest.mark.parametrize("width", [21, 22])
@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("c", CHANNELS)
def test_nan_inf_reach_their_pixel_only(c, s, width):
    # 1 x 5 x 21 (stride 1: pixels 0..104, groups of 8 and a tail of 1; stride 2: rows of 11);
    # width 22 at stride 2: the backward data's rows of pixel pairs (each pixel, then the
    # skipped one's zeros: narrow_pointwise_regs.h PAIRS)
    rng, x, wt, b, args = _operands(1000 + c + width, 1, 5, width, c, c, s)
    for (h, w) in [(0, 0), (0, 7 * s if s == 1 else 14), (2, 10), (4, 20)]:
        x[0, h, w, c - 1] = np.nan
    x[0, 1, 3, 0] = np.inf
    ref = _fwd_ref(x, wt, b, args)
    bad = _check_nonfinite(_C.conv2d_forward(x, wt, b, *args), ref)
    assert bad.sum() == c * (5 if s == 1 else 4)  # stride 2: (1, 3) is skipped
    dy = rng.standard_normal(ref.shape).astype(np.float32)
    oh, ow = ref.shape[1:3]
    dy[0, 0, 0, 0] = np.nan
    dy[0, oh - 1, ow - 1, c - 1] = -np.inf
    dy[0, oh // 2, 8 % ow, 1] = np.nan
    rb = _bwd_ref(dy, wt, x.shape, args)
    bad = _check_nonfinite(_C.conv2d_backward_data(dy, wt, x.shape, *args), rb)
    assert bad.sum() == 3 * c


# The 1 -> 1 weight pass at stride 1 (narrow_pointwise_weights.cpp dot_pixels' unit-stride
# streams; below AVX-512 in the level's own registers, stop 38): dw = sum x * dy, db = sum dy
# over every pixel, items of 2048 pixels, 4 sums of 8 (avx2) lanes, the last count % 32
# pixels in registers of 8 and one by one. Tolerance: 1e-5 of the sum of |terms| (float sums).
@pytest.mark.parametrize("threads", [1, 2])
def test_weight_pass_one_channel(threads):
    old = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        for k, (n, h, w) in enumerate([(1, 1, 1), (1, 1, 7), (1, 3, 5), (1, 5, 7), (1, 6, 11), (2, 33, 35),
                                       (3, 28, 28), (1, 112, 112), (9, 56, 56)]):
            rng, x, wt, b, args = _operands(1100 + k, n, h, w, 1, 1, 1)
            dy = rng.standard_normal(x.shape).astype(np.float32)
            dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
            x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
            np.testing.assert_allclose(dw.ravel(), [(x64 * dy64).sum()], rtol=0,
                                       atol=1e-5 * np.abs(x64 * dy64).sum())
            np.testing.assert_allclose(db, [dy64.sum()], rtol=0, atol=1e-5 * np.abs(dy64).sum())
            dw2, db2 = _C.conv2d_backward_weights(dy, x, wt.shape, *args, False)
            assert db2 is None and dw2.shape == dw.shape
            np.testing.assert_allclose(dw2, dw, rtol=0, atol=1e-5 * np.abs(x64 * dy64).sum())
    finally:
        _C.set_num_threads(old)


@pytest.mark.parametrize("where", [0, 5, 31, 32, 40, 2047, 2048, 3000 - 1])
def test_weight_pass_one_channel_nan(where):
    rng, x, wt, b, args = _operands(1200, 1, 30, 100, 1, 1, 1)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    x.reshape(-1)[where] = np.nan
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    assert np.isnan(dw).all() and np.isfinite(db).all()
    x.reshape(-1)[where] = 1.0
    dy.reshape(-1)[where] = np.inf
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    assert np.isinf(dw).all() and np.isinf(db).all()
