"""1x1 convs with few channels on the per-pixel map (narrow_pointwise.cpp map_pixels), whose
groups of pixels run on the level's own registers below AVX-512 (map_group_native: OUT
channels as ceil(OUT / 8) ymm at avx2, ceil(OUT / 4) xmm at the baseline; a group of 4 pixels
with more than 12 accumulator registers as two halves), stop 37. At AVX-512 the same shapes
run map_group's 16-lane vectors: these tests hold at every level.

Against the float64 oracle (conv_oracle.close: rtol 1e-4, atol 1e-5 x the largest magnitude):
every output count 1..32 the map takes (forward up to 24 at a stride below AVX-512, backward
data up to 32), input counts other than the output's, stride 1 and 2, odd and even sizes,
batch 1, rows whose pixel counts leave 1, 2 and 3 pixels after the groups of 4; bias and relu;
the backward data's pixels off the stride grid exact zeros (outputs start as NaN,
conftest.py); NaN and inf reaching exactly the oracle's outputs, never from a skipped pixel.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from fastconv.functional._args import resolve_padding
from conv_oracle import close


def _operands(seed, n, h, w, cin, cout, s, padding="same"):
    strides = (s, s)
    pads = resolve_padding(padding, (h, w), (1, 1), strides, (1, 1))
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


# (cin, cout): outputs 1..24 (forward), with inputs on either side of them
FORWARD_PAIRS = [(1, 2), (3, 1), (2, 3), (6, 4), (5, 5), (7, 6), (3, 7), (8, 8), (9, 9), (4, 11),
                 (12, 12), (16, 13), (15, 15), (16, 16), (6, 16), (17, 17), (20, 20), (24, 24),
                 (13, 24)]
# (n, h, w): output rows of 1..7 pixels at stride 2, 5..13 at stride 1; batch 1
SIZES = [(2, 7, 9), (1, 13, 11), (3, 5, 6), (1, 3, 2)]


@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("cin,cout", FORWARD_PAIRS)
def test_forward_matches_oracle(cin, cout, s):
    for k, (n, h, w) in enumerate(SIZES):
        _, x, wt, b, args = _operands(100 + k, n, h, w, cin, cout, s)
        ref = _fwd_ref(x, wt, b, args)
        close(_C.conv2d_forward(x, wt, b, *args), ref)
        close(_C.conv2d_forward(x, wt, b, *args, "relu"), np.maximum(ref, 0.0))


# (cin, cout) of the conv: the backward data maps cout -> cin (outputs 1..32)
BACKWARD_PAIRS = [(1, 1), (2, 5), (3, 3), (4, 2), (5, 8), (6, 6), (7, 3), (8, 8), (9, 4),
                  (11, 11), (16, 16), (16, 6), (17, 9), (23, 23), (24, 24), (28, 5), (32, 32),
                  (30, 17)]


@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("cin,cout", BACKWARD_PAIRS)
def test_backward_data_matches_oracle(cin, cout, s):
    for k, (n, h, w) in enumerate(SIZES):
        rng, x, wt, b, args = _operands(200 + k, n, h, w, cin, cout, s)
        oh, ow = -(-h // s), -(-w // s)
        dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
        dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
        close(dx, _bwd_ref(dy, wt, x.shape, args))
        off = np.ones(x.shape[:3], bool)
        off[:, ::s, ::s] = False
        assert np.all(dx[off] == 0.0)


@pytest.mark.parametrize("c", [3, 6, 16, 24])
def test_sweep_shapes_scaled_down(c):
    # The sweep's 1x1 s2 cases (N=256 28x28 / 56x56) at batch 3, all passes
    rng, x, wt, b, args = _operands(300 + c, 3, 28, 28, c, c, 2)
    y = _C.conv2d_forward(x, wt, b, *args)
    close(y, _fwd_ref(x, wt, b, args))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    close(_C.conv2d_backward_data(dy, wt, x.shape, *args), _bwd_ref(dy, wt, x.shape, args))
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), wt.shape, *args, True)
    close(dw, rdw)
    close(db, rdb)


def _check_nonfinite(got, ref):
    bad = ~np.isfinite(ref)
    assert np.array_equal(~np.isfinite(got), bad)
    np.testing.assert_array_equal(got[bad], ref[bad].astype(np.float32))
    close(np.where(bad, 0, got).astype(np.float32), np.where(bad, 0, ref))
    return bad


@pytest.mark.parametrize("c", [3, 7, 12, 16, 20])
def test_forward_nan_inf_reach_their_pixel_only(c):
    _, x, wt, b, args = _operands(400 + c, 3, 9, 11, c, c, 2)
    x[0, 2, 4, c - 1] = np.nan   # read: output (1, 2)
    x[1, 8, 10, 0] = np.inf      # read: the last pixel of the image
    x[2, 3, 3, 0] = np.nan       # odd row: skipped
    x[2, 4, 5, 1] = np.inf       # odd column: skipped
    ref = _fwd_ref(x, wt, b, args)
    bad = _check_nonfinite(_C.conv2d_forward(x, wt, b, *args), ref)
    assert bad[0, 1, 2].all() and bad[1, 4, 5].all() and not bad[2].any()
    assert bad.sum() == 2 * c


@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("cin,cout", [(3, 3), (8, 5), (16, 16), (32, 24)])
def test_backward_data_nan_inf_reach_their_pixel_only(cin, cout, s):
    rng, x, wt, b, args = _operands(500 + cin, 2, 9, 11, cin, cout, s)
    oh, ow = -(-9 // s), -(-11 // s)
    dy = rng.standard_normal((2, oh, ow, cout)).astype(np.float32)
    dy[0, 1, 2, cout - 1] = np.nan
    dy[1, oh - 1, ow - 1, 0] = -np.inf  # the last pixel: the zeros after it stay zero
    ref = _bwd_ref(dy, wt, x.shape, args)
    bad = _check_nonfinite(_C.conv2d_backward_data(dy, wt, x.shape, *args), ref)
    assert bad[0, s, 2 * s].all() and bad[1, (oh - 1) * s, (ow - 1) * s].all()
    assert bad.sum() == 2 * cin


# The weight pass's per-pixel dot (dot_pixels; below AVX-512 dot_native: dy's channels as 1..4
# registers, the input channels in blocks of <= 12 / registers): inputs 1..16, outputs 1..16.
WEIGHT_PAIRS = [(4, 4), (5, 3), (6, 6), (7, 9), (8, 8), (9, 2), (10, 16), (12, 12), (13, 5),
                (16, 16), (16, 7), (2, 16), (11, 13)]


@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("cin,cout", WEIGHT_PAIRS)
def test_weight_pass_matches_oracle(cin, cout, s):
    for k, (n, h, w) in enumerate(SIZES + [(4, 14, 14)]):
        rng, x, wt, b, args = _operands(600 + k, n, h, w, cin, cout, s)
        oh, ow = -(-h // s), -(-w // s)
        dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
        rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), wt.shape, *args, True)
        dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
        close(dw, rdw)
        close(db, rdb)
        dw2, db2 = _C.conv2d_backward_weights(dy, x, wt.shape, *args, False)
        assert db2 is None
        np.testing.assert_array_equal(dw2, dw)


@pytest.mark.parametrize("cin,cout", [(6, 6), (16, 9)])
def test_weight_pass_nan_reaches_its_row_and_column(cin, cout):
    # x NaN at a read pixel: dw's row of that input channel; dy NaN: dw's column (and db's
    # channel). NaN in a skipped pixel reaches nothing.
    rng, x, wt, b, args = _operands(700 + cin, 3, 9, 11, cin, cout, 2)
    dy = rng.standard_normal((3, 5, 6, cout)).astype(np.float32)
    x[1, 2, 4, 2] = np.nan   # read
    x[2, 3, 3, 0] = np.nan   # skipped (odd row)
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    assert np.isnan(dw[0, 0, 2]).all() and np.isfinite(np.delete(dw[0, 0], 2, axis=0)).all()
    assert np.isfinite(db).all()
    x[1, 2, 4, 2] = 0.0
    dy[0, 1, 1, cout - 1] = np.nan
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    assert np.isnan(dw[0, 0, :, cout - 1]).all() and np.isfinite(dw[0, 0, :, :cout - 1]).all()
    assert np.isnan(db[cout - 1]) and np.isfinite(db[:cout - 1]).all()
