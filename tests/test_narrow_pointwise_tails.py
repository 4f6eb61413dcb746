"""1x1 convs of few channels (narrow_pointwise.cpp, narrow_pointwise_planar.h) against the float64
oracle where the 2026-12-07 changes (issue 18 item 3, helper Y) run: rows shorter than a register
and register tails (masked loads and stores at AVX-512: the planar forward map's tails, the
weight pass's tails, the packed weight pass's last groups), the strided backward data that writes
a skipped pixel's zeros with the pixel before it (W = 2 OW, C <= 8), the strided forward map at
25..32 channels and the strided weight pass at 17..24 channels; stop 34: the weight pass at
17..32 channels each side (dot_wide) and the maps' 17..24-channel pixels in 16 + 8 lanes. Every ISA level runs the same
tests (FASTCONV_ISA=avx2 / baseline keep the older paths, which must agree too).

Tolerance: conv_oracle.close (rtol 1e-4, atol 1e-5 times the output's magnitude; float sums
of a few thousand products). NaN/inf: a NaN in dy reaches exactly its dx pixel, never the
zeros written beside it; an inf in x reaches exactly the weights of its input channel."""
import numpy as np
import pytest

from fastconv import _C
from conv_oracle import check_conv_passes, close
from fastconv import reference as R

PASSES = ("forward", "backward_data", "backward_weights")


def _check(seed, n, h, w, cin, cout, stride, bias=True):
    args = ((stride, stride), (0, 0, 0, 0), (1, 1), 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    check_conv_passes(rng, x, wt, b, args)
    return _C.conv_algorithm(x.shape, wt.shape, *args)


@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("stride", [1, 2])
def test_short_rows_and_tails_every_width(c, stride):
    """Widths around one and two registers of pixels (16 at AVX-512) at either stride, even and
    odd (at stride 2 an odd width leaves a last pixel without a skipped one after it), batch 1
    and 3 (the tails at the end of the tensor)."""
    for i, w in enumerate((2, 7, 14, 15, 28, 29, 31, 33, 56)):
        n, h = (1, 3) if i % 2 else (3, 4)
        algos = _check(1000 * c + 10 * w + stride, n, h, w, c, c, stride, bias=i % 3 != 1)
        assert all(algos[p] == "direct" for p in PASSES), (c, w, algos)


@pytest.mark.parametrize("c", [1, 3, 6, 16, 24])
def test_weight_pass_long_streams(c):
    """Stride 1: the weight pass cuts the pixel stream into runs of 2048 pixels; 3034 pixels
    here (a run and a partial one, tails of every kernel), with the bias gradient."""
    _check(500 + c, 2, 37, 41, c, c, 1)


@pytest.mark.parametrize("cin, cout", [(3, 1), (1, 4), (2, 3), (4, 2), (3, 6), (6, 3), (8, 5)])
def test_unequal_channels_strided(cin, cout):
    for w in (14, 15, 28):
        _check(cin * 100 + cout * 10 + w, 2, 5, w, cin, cout, 2)


@pytest.mark.parametrize("c", [1, 3, 6, 8])
def test_strided_backward_data_zeros_and_nan(c):
    """dx of a 1x1 stride-2 conv with W = 2 OW: zero off the stride grid, a NaN in dy reaches
    exactly its own dx pixel (all channels), the skipped pixels beside it stay 0; inf weights
    the same way (0 * inf must not reach the zeros)."""
    rng = np.random.default_rng(c)
    n, h, w = 2, 6, 28
    wt = rng.standard_normal((1, 1, c, c)).astype(np.float32)
    dy = rng.standard_normal((n, h // 2, w // 2, c)).astype(np.float32)
    args = ((2, 2), (0, 0, 0, 0), (1, 1), 1)
    dx = _C.conv2d_backward_data(dy, wt, (n, h, w, c), *args)
    assert (dx[:, 1::2] == 0).all() and (dx[:, :, 1::2] == 0).all()
    assert np.isfinite(dx).all()
    dy[1, 2, 13, c - 1] = np.nan
    dx = _C.conv2d_backward_data(dy, wt, (n, h, w, c), *args)
    assert np.isnan(dx[1, 4, 26]).all() and np.isnan(dx).sum() == c
    wt[0, 0, 0, 0] = np.inf
    dy[1, 2, 13, c - 1] = 1.0
    dx = _C.conv2d_backward_data(dy, wt, (n, h, w, c), *args)
    assert np.isinf(dx[:, ::2, ::2, 0]).all()
    assert (dx[:, 1::2] == 0).all() and (dx[:, :, 1::2] == 0).all()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c", [1, 3, 6, 20, 24, 32])
def test_weight_pass_inf_reaches_its_channel_only(stride, c):
    rng = np.random.default_rng(40 + c)
    x = rng.standard_normal((2, 8, 30, c)).astype(np.float32)
    x[1, 6, 28, c - 1] = np.inf  # an even pixel of an even row: read at stride 2 too
    args = ((stride, stride), (0, 0, 0, 0), (1, 1), 1)
    oh, ow = 8 // stride, 30 // stride
    dy = rng.standard_normal((2, oh, ow, c)).astype(np.float32)
    dw, _ = _C.conv2d_backward_weights(dy, x, (1, 1, c, c), *args, False)
    assert not np.isfinite(dw[0, 0, c - 1]).any()
    assert np.isfinite(dw[0, 0, : c - 1]).all()
    y = _C.conv2d_forward(x, rng.standard_normal((1, 1, c, c)).astype(np.float32), None, *args)
    assert (~np.isfinite(y)).sum() == c and not np.isfinite(y[1, 6 // stride, 28 // stride]).any()


@pytest.mark.parametrize("c", [24, 28, 32])
def test_wide_strided_forward_and_weights(c):
    """1x1 stride-2 forward at 25..32 channels on the map, the weight pass at 17..32 (AVX-512:
    dot_wide, every row length since stop 34) in blocks of rows: rows of every tail length,
    batch 1 and 2."""
    for i, w in enumerate((1, 5, 14, 15, 27, 28, 33)):
        n, h = (1, 5) if i % 2 else (2, 4)
        algos = _check(c * 10 + w, n, h, w, c, c, 2, bias=i % 2 == 0)
        assert algos["backward_data"] == "direct", (c, algos)
        if _C.isa_level() == "avx512":  # below, the GEMM keeps 25..32 and the weight pass
            assert algos["forward"] == "direct", (c, algos)
            assert algos["backward_weights"] == "direct", (c, w, algos)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("cin, cout", [(17, 17), (24, 24), (20, 31), (31, 20), (25, 32), (32, 32)])
def test_wide_weight_pass_and_maps(stride, cin, cout):
    """Stop 34 (AVX-512): the weight pass at 17..32 channels each side (dot_wide: input
    channels in blocks of <= 13, dy's channels 16.. in 8 or 16 masked lanes) and the maps'
    channels 16..23 in 8 lanes (HiVec, 17..24 outputs): rows of 1..29 pixels, batch 1 and 2,
    with and without bias; a stride-1 stream of 2048-pixel runs and a partial one."""
    for i, w in enumerate((1, 5, 7, 14, 15, 29)):
        n, h = (1, 5) if i % 2 else (2, 3)
        algos = _check(cin * 1000 + cout * 10 + w + stride, n, h, w, cin, cout, stride, bias=i % 2 == 0)
        if _C.isa_level() == "avx512":
            assert algos["backward_weights"] == "direct", (cin, cout, w, algos)
    if stride == 1:
        _check(cin + cout, 2, 33, 41, cin, cout, 1)


def test_threaded_strided_matches_oracle_and_one_thread():
    """Two threads over the strided paths (rows split between them); same results as one
    thread for the maps (rows are independent)."""
    old = _C.get_num_threads()
    try:
        rng = np.random.default_rng(7)
        for c in (3, 6, 32):
            x = rng.standard_normal((8, 56, 56, c)).astype(np.float32)
            wt = rng.standard_normal((1, 1, c, c)).astype(np.float32)
            args = ((2, 2), (0, 0, 0, 0), (1, 1), 1)
            _C.set_num_threads(2)
            check_conv_passes(rng, x, wt, None, args)
            y2 = _C.conv2d_forward(x, wt, None, *args)
            dy = rng.standard_normal(y2.shape).astype(np.float32)
            dx2 = _C.conv2d_backward_data(dy, wt, x.shape, *args)
            _C.set_num_threads(1)
            np.testing.assert_array_equal(_C.conv2d_forward(x, wt, None, *args), y2)
            np.testing.assert_array_equal(_C.conv2d_backward_data(dy, wt, x.shape, *args), dx2)
    finally:
        _C.set_num_threads(old)


# ---- stop 35 (helper Y): the packed strided forward map at 5..8 channels, the strided backward
# data at 9..16 channels (zeroed rows, then the map: pixel pairs in two stores measured slower),
# the bias gradient summed from the planar and packed weight kernels' dy registers, and the
# packed weight lanes kept across work items (folded at the flush).

@pytest.mark.parametrize("c", [9, 12, 16])
def test_strided_pairs_9_to_16_channels(c):
    """Stride 2 at 9..16 channels each side, all three passes against the oracle: even widths
    (W = 2 OW) and odd ones, batch 1 and 2, short rows and rows of several pixels."""
    for i, w in enumerate((2, 7, 14, 15, 28, 29)):
        n, h = (1, 5) if i % 2 else (2, 4)
        algos = _check(c * 100 + w, n, h, w, c, c, 2, bias=i % 2 == 0)
        assert algos["backward_data"] == "direct", (c, w, algos)


@pytest.mark.parametrize("c", [9, 12, 16])
def test_strided_pairs_9_to_16_zeros_and_nan(c):
    """At 9..16 channels: zeros off the grid, a NaN in dy reaches exactly its own dx pixel, and
    0 * inf never reaches the skipped pixels' zeros."""
    test_strided_backward_data_zeros_and_nan(c)


@pytest.mark.parametrize("c", [5, 6, 7, 8])
@pytest.mark.parametrize("w", [13, 14, 28, 29])
def test_packed_strided_forward_nonfinite_reaches_its_pixel_only(c, w):
    """The packed stride-2 forward map (P = 16 // c pixels a vector, AVX-512): an inf in x at a
    pixel the stride reads reaches all c outputs of its own output pixel and nothing else,
    including in a row's last (masked) group; a NaN likewise; the odd pixels are never read."""
    rng = np.random.default_rng(c * 10 + w)
    n, h = 2, 6
    oh, ow = h // 2, (w + 1) // 2
    args = ((2, 2), (0, 0, 0, 0), (1, 1), 1)
    wt = rng.standard_normal((1, 1, c, c)).astype(np.float32)
    for (iy, ix, val) in ((2, 0, np.inf), (4, 2 * (ow - 1), np.nan), (0, 2 * (ow // 2), -np.inf)):
        x = rng.standard_normal((n, h, w, c)).astype(np.float32)
        x[1, iy, ix, c - 1] = val
        if ix + 1 < w:
            x[0, iy, ix + 1, 0] = np.nan  # an odd pixel: the stride skips it
        y = _C.conv2d_forward(x, wt, None, *args)
        bad = ~np.isfinite(y)
        assert bad[1, iy // 2, ix // 2].all() and bad.sum() == c, (iy, ix, np.argwhere(bad))
        ok = x.copy()
        ok[1, iy, ix, c - 1] = 0.0
        fin = np.isfinite(y)
        ref = ok[:, ::2, ::2].astype(np.float64) @ wt[0, 0].astype(np.float64)
        np.testing.assert_allclose(y[fin], ref[fin], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c", [3, 4, 6, 8])
def test_weight_pass_bias_gradient_nan_reaches_its_channel_only(stride, c):
    """db from the weight kernels' own dy registers (planar at 3, packed at 4..8, AVX-512): a
    NaN in dy reaches db of its channel only, and dw's column of that channel only; with an
    item that ends in a partial register (odd widths) and several items (N * H * W > 2048)."""
    rng = np.random.default_rng(90 + c + stride)
    n, h, w = 3, 24, 37
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    args = ((stride, stride), (0, 0, 0, 0), (1, 1), 1)
    oh, ow = -(-h // stride), -(-w // stride)
    dy = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
    dy[2, oh - 1, ow - 1, c - 1] = np.nan  # the tensor's last pixel: a masked tail
    dw, db = _C.conv2d_backward_weights(dy, x, (1, 1, c, c), *args, True)
    assert np.isnan(db[c - 1]) and np.isfinite(db[: c - 1]).all()
    assert np.isnan(dw[0, 0, :, c - 1]).all() and np.isfinite(dw[0, 0, :, : c - 1]).all()
    dy[2, oh - 1, ow - 1, c - 1] = 1.0
    dy[0, 0, 0, 0] = np.inf
    dw, db = _C.conv2d_backward_weights(dy, x, (1, 1, c, c), *args, True)
    assert np.isinf(db[0]) and np.isfinite(db[1:]).all()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c", [3, 4, 5, 6, 8])
def test_weight_pass_many_items_with_bias(stride, c):
    """Many work items between flushes (rows of 7 and 14 pixels at stride 2, an item per image:
    the packed lanes and the fused bias sums carry across items), batch 40, with and without
    the bias gradient, against the oracle."""
    for hw in (14, 15, 28):
        rng = np.random.default_rng(c * 7 + hw + stride)
        x = rng.standard_normal((40, hw, hw, c)).astype(np.float32)
        wt = rng.standard_normal((1, 1, c, c)).astype(np.float32)
        args = ((stride, stride), (0, 0, 0, 0), (1, 1), 1)
        y = _C.conv2d_forward(x, wt, None, *args)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        for bias in (True, False):
            dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, bias)
            rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                                 wt.shape, *args, bias)
            close(dw, rdw)
            if bias:
                close(db, rdb)
            else:
                assert db is None


# ---- stop 35 (helper Y2): the strided backward data at 1 -> 1 channel with W = 2 OW maps each
# grid row inline (no map call per row), the rows off the grid zeroed as before.

@pytest.mark.parametrize("h, w", [(4, 2), (3, 14), (14, 14), (7, 28), (28, 28), (29, 56), (56, 112)])
@pytest.mark.parametrize("n", [1, 3])
def test_strided_backward_data_one_channel_rows(n, h, w):
    """1 -> 1 channel, stride 2, even widths (W = 2 OW), odd and even heights (an odd H ends on a
    grid row), batch 1 and 3, rows of 1..56 pixels: against the float64 oracle; zeros off the
    grid exactly; a NaN and an inf in dy reach exactly their own dx pixels."""
    rng = np.random.default_rng(100 * h + w + n)
    args = ((2, 2), (0, 0, 0, 0), (1, 1), 1)
    wt = rng.standard_normal((1, 1, 1, 1)).astype(np.float32)
    oh, ow = (h + 1) // 2, w // 2
    dy = rng.standard_normal((n, oh, ow, 1)).astype(np.float32)
    dx = _C.conv2d_backward_data(dy, wt, (n, h, w, 1), *args)
    close(dx, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), (n, h, w, 1), *args))
    assert (dx[:, 1::2] == 0).all() and (dx[:, :, 1::2] == 0).all()
    dy[n - 1, oh - 1, ow - 1, 0] = np.nan
    dy[0, 0, 0, 0] = np.inf if (n, oh, ow) != (1, 1, 1) else np.nan
    dx = _C.conv2d_backward_data(dy, wt, (n, h, w, 1), *args)
    assert np.isnan(dx[n - 1, 2 * (oh - 1), 2 * (ow - 1), 0])
    assert not np.isfinite(dx[0, 0, 0, 0])
    assert (~np.isfinite(dx)).sum() == (2 if (n, oh, ow) != (1, 1, 1) else 1)
