"""3x3 stride-2 convs on the column-phase planes (csrc/cpu/few_channel_s2_planes.cpp: all
three passes for one channel in and out (straight from the rows at AVX-512,
few_channel_s2_c1.cpp), the forward for C = 2..4 and 6, the backward data
pass for C = 2..4 from 14 columns (C = 4 up to 64) and C = 6 at AVX-512, the weight pass for C = 3 from 14
columns; the rest of
each _check runs on the row and direct kernels): against the float64 oracle
(test_direct_conv._close: rtol 1e-4, atol 1e-5 of the largest value).

The kernel runs blocks of output rows (forward, weights: planes of (R + 1) x OW, R = 16384 /
(6 OW) - 1; backward data: (R + 2) x (OW + 1), R = 16384 / (5 (OW + 1)) - 2) as flat vector
streams: so the shapes cover blocks shorter than one vector (1x1, 3x2 outputs), block ends
inside a vector (a partial last vector: the forward repeats the last full one, the weights
zero the lanes past the block), several blocks per image (200 and more columns), odd and
even sizes, every pad 0..2 on each side (the split reads straight from x or through a padded
row copy, and zeroes the pad columns it read), batch 1 and 3, threads, and NaN/inf at the
image's edges and corners landing where the reference puts them. The forward with C
channels stores its planar results to NHWC through pixel_transpose::merge, so C = 2, 3, 4, 6
cover every merge width it uses; the backward data pass merges 2C planar rows (a pixel
pair's channels), C = 2..4; C = 6 as two 6-channel merges."""
import itertools

import numpy as np
import pytest

import fastconv as fc
from fastconv import _C
from fastconv import reference as R

from conv_oracle import same_nonfinite
from test_direct_conv import _check, _close

# (h, w): one output, under one vector of outputs, odd/even, a vector plus a little, long
SIZES = ((1, 1), (3, 2), (4, 5), (7, 7), (8, 9), (13, 30), (11, 35), (9, 66), (5, 131))


@pytest.mark.parametrize("h, w", SIZES)
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (0, 0, 0, 0), (2, 0, 1, 2)))
def test_passes_against_reference(h, w, pads):
    if h + pads[0] + pads[1] < 3 or w + pads[2] + pads[3] < 3:
        pytest.skip("window larger than the padded input")
    _check(h * 1000 + w, 1 if (h + w) % 2 else 3, h, w, 1, 1, (3, 3), (2, 2), pads, (1, 1),
           bias=w % 2 == 1)


@pytest.mark.parametrize("pads", list(itertools.product((0, 1, 2), (0, 2), (0, 1, 2), (0, 1))))
def test_every_pad(pads):
    _check(sum(pads), 2, 9, 12, 1, 1, (3, 3), (2, 2), pads, (1, 1))


@pytest.mark.parametrize("h, w", ((61, 203), (120, 240), (33, 1030)))
def test_several_blocks_per_image(h, w):
    # 203 columns: forward blocks of 79 rows of 102 outputs; 240 columns: 67 rows and
    # backward-data blocks of 25 plane rows; 1030 columns: blocks of 1..2 rows.
    _check(h + w, 1, h, w, 1, 1, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1))


def test_threaded_and_deterministic():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((24, 150, 151, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    args = ((2, 2), (0, 1, 1, 1), (1, 1), 1)
    dy = rng.standard_normal((24, 75, 76, 1)).astype(np.float32)
    saved = fc.get_num_threads()
    fc.set_num_threads(2)
    try:
        runs = [(_C.conv2d_forward(x, wt, None, *args),
                 _C.conv2d_backward_data(dy, wt, x.shape, *args),
                 _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)) for _ in range(2)]
    finally:
        fc.set_num_threads(saved)
    (y, dx, (dw, db)), (y2, dx2, (dw2, db2)) = runs
    for a, b in ((y, y2), (dx, dx2), (dw, dw2), (db, db2)):
        assert np.array_equal(a, b)
    x64, w64, dy64 = x.astype(np.float64), wt.astype(np.float64), dy.astype(np.float64)
    _close(y, R.conv2d_forward(x64, w64, None, *args))
    _close(dx, R.conv2d_backward_data(dy64, w64, x.shape, *args))
    rdw, rdb = R.conv2d_backward_weights(dy64, x64, wt.shape, *args, True)
    _close(dw, rdw)
    _close(db, rdb)


def test_fused_relu():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 17, 40, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = np.array([0.3], np.float32)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    y = _C.conv2d_forward(x, wt, b, *args, "relu")
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    assert (ref < 0).any()
    _close(y, np.maximum(ref, 0.0))


# the float64 reference itself computes 0 * inf (NaN, as it should): numpy warns about it
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("where", ((0, 0), (0, 36), (14, 0), (14, 36), (7, 17), (6, 18)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (2, 2, 2, 2)))
def test_nonfinite_lands_where_the_reference_puts_it(bad, where, pads):
    """A non-finite x value (forward, weights) or dy value (data) at a corner, an edge or
    inside: the same NaN/inf pattern as the reference (a wrong plane, offset or pad column
    would move it or lose it), the rest close."""
    rng = np.random.default_rng(11)
    args = ((2, 2), pads, (1, 1), 1)
    x = rng.standard_normal((2, 15, 37, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    x[1, where[0], where[1], 0] = bad
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y = _C.conv2d_forward(x, wt, b, *args)
    ref = R.conv2d_forward(x64, w64, b.astype(np.float64), *args)
    assert not np.isfinite(ref).all()
    same_nonfinite(y, ref)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, True)
    assert not np.isfinite(rdw).all()
    same_nonfinite(dw, rdw)
    _close(db, rdb)
    oy, ox = min(where[0] // 2, y.shape[1] - 1), min(where[1] // 2, y.shape[2] - 1)
    dy[1, oy, ox, 0] = bad
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    rdx = R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args)
    assert not np.isfinite(rdx).all()
    same_nonfinite(dx, rdx)


@pytest.mark.parametrize("c", (2, 3, 4, 6))
@pytest.mark.parametrize("h, w", ((3, 2), (7, 7), (8, 9), (13, 30), (11, 31), (5, 66)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (2, 0, 1, 2)))
def test_forward_channels(c, h, w, pads):
    if h + pads[0] + pads[1] < 3 or w + pads[2] + pads[3] < 3:
        pytest.skip("window larger than the padded input")
    _check(c * 100 + h + w, 1 if w % 2 else 3, h, w, c, c, (3, 3), (2, 2), pads, (1, 1),
           bias=h % 2 == 1)


@pytest.mark.parametrize("c, h, w", ((3, 61, 203), (2, 40, 400), (6, 30, 31)))
def test_forward_channels_several_blocks(c, h, w):
    # C = 3, 203 columns: blocks of 7 output rows; C = 2, 400: 9; C = 6, 31: 15.
    _check(c + h + w, 2, h, w, c, c, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1))


@pytest.mark.parametrize("n, h, w", ((2, 45, 131), (1, 57, 33), (3, 12, 64)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (0, 0, 0, 0)))
def test_forward_c6_wide(n, h, w, pads):
    """C = 6 on the planes past 32 columns (before: the direct path): blocks of 3 output rows
    at 131 columns (planes of 66 columns), one block per image at 33 and 64, odd and even
    sizes, 'same', 'valid' and zero pads; the block after each prefetched while it computes."""
    _check(n * 1000 + h + w + sum(pads), n, h, w, 6, 6, (3, 3), (2, 2), pads, (1, 1),
           bias=w % 2 == 1)


def test_c3_past_4m_floats():
    """The C = 3 weight pass on the planes past 4 M floats of x (before: the row kernel),
    each block prefetching the next one's rows (the last block of an image the next image's
    first): against the reference."""
    rng = np.random.default_rng(88)
    args = ((2, 2), (0, 1, 0, 1), (1, 1), 1)
    x = rng.standard_normal((9, 250, 625, 3)).astype(np.float32)  # 4.2 M floats
    dy = rng.standard_normal((9, 125, 312, 3)).astype(np.float32)
    assert x.size > 1 << 22
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, 3, 3), *args, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, 3, 3), *args, True)
    _close(dw, rdw)
    _close(db, rdb)
    # The data pass there too (before: the row kernel past 4 M floats of dx), each item's
    # dx rows prefetched while the item before computes.
    wt = rng.standard_normal((3, 3, 3, 3)).astype(np.float32)
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    _close(dx, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, *args))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c, w", ((2, 23), (3, 23), (6, 23), (6, 71)))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_forward_channels_nonfinite(c, w, bad):
    """A non-finite x value at an edge and one inside, then a non-finite weight: the
    reference's NaN/inf pattern exactly (it multiplies the padding's zeros too)."""
    rng = np.random.default_rng(c)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    x = rng.standard_normal((2, 9, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    x[0, 0, w - 1, c - 1] = bad
    x[1, 4, 9, 0] = -bad
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    assert not np.isfinite(ref).all()
    same_nonfinite(_C.conv2d_forward(x, wt, b, *args), ref)
    x = rng.standard_normal((2, 9, w, c)).astype(np.float32)
    wt[2, 0, c - 1, 0] = bad
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    assert not np.isfinite(ref).all()
    same_nonfinite(_C.conv2d_forward(x, wt, b, *args), ref)


@pytest.mark.parametrize("c", (2, 3, 4, 6))
@pytest.mark.parametrize("h, w", ((5, 14), (14, 15), (9, 33), (4, 64)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (2, 1, 1, 2)))
def test_backward_data_channels(c, h, w, pads):
    _check(c * 1000 + h * w, 1 if w % 2 else 2, h, w, c, c, (3, 3), (2, 2), pads, (1, 1))


@pytest.mark.parametrize("n, h, w", ((3, 7, 7), (2, 14, 14), (1, 8, 9), (1, 3, 2), (2, 28, 28),
                                     (1, 45, 131), (1, 9, 250)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (0, 0, 0, 0), (2, 2, 2, 1)))
def test_backward_data_c6(n, h, w, pads):
    """C = 6 backward data on the planes at AVX-512 (before: the direct path): its 12 planar
    rows of a pixel pair merged as two 6-channel merges of pair-interleaved channels; images
    under one vector (7x7, 3x2), one item per image, several items (131 and 250 columns: items
    of 6 and 2 plane rows), 'same', 'valid', zero and wide pads, batch 1 and more."""
    if h + pads[0] + pads[1] < 3 or w + pads[2] + pads[3] < 3:
        pytest.skip("window larger than the padded input")
    _check(n * 1000 + h * w + sum(pads), n, h, w, 6, 6, (3, 3), (2, 2), pads, (1, 1))


def test_backward_data_c6_threaded_and_deterministic():
    rng = np.random.default_rng(66)
    args = ((2, 2), (0, 1, 0, 1), (1, 1), 1)
    dy = rng.standard_normal((16, 28, 29, 6)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
    x_shape = (16, 56, 58, 6)
    saved = fc.get_num_threads()
    fc.set_num_threads(2)
    try:
        runs = [_C.conv2d_backward_data(dy, wt, x_shape, *args) for _ in range(2)]
    finally:
        fc.set_num_threads(saved)
    assert np.array_equal(runs[0], runs[1])
    _close(runs[0], R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape,
                                           *args))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (2, 3, 4, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_backward_data_channels_nonfinite(c, bad):
    """A non-finite dy value at a corner and one inside: the reference's pattern exactly."""
    rng = np.random.default_rng(c + 20)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    x_shape = (2, 15, 29, c)
    dy = rng.standard_normal((2, 8, 15, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    dy[0, 7, 14, c - 1] = bad
    dy[1, 3, 6, 0] = -bad
    ref = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args)
    assert not np.isfinite(ref).all()
    same_nonfinite(_C.conv2d_backward_data(dy, wt, x_shape, *args), ref)


@pytest.mark.parametrize("c", (2, 3, 4, 6))
@pytest.mark.parametrize("n, h, w", ((1, 3, 2), (3, 7, 7), (1, 8, 9), (2, 13, 30), (1, 11, 33),
                                     (2, 28, 28), (1, 5, 131)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (2, 0, 1, 2)))
def test_backward_weights_channels(c, n, h, w, pads):
    """The weight pass on the planes for C = 3 from 14 columns (register groups of (tap, ci)
    pairs x output channels over the block's planes and its dy split to planes): partial last
    vectors (30, 33, 131 columns), whole 28x28 images, batch 1 and more; the narrower shapes
    and C = 2, 4, 6 check that the others stay on their kernels, correct (the _check covers
    all three passes)."""
    if h + pads[0] + pads[1] < 3 or w + pads[2] + pads[3] < 3:
        pytest.skip("window larger than the padded input")
    _check(c * 10000 + n * 1000 + h * w, n, h, w, c, c, (3, 3), (2, 2), pads, (1, 1),
           bias=(h + w) % 2 == 0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (2, 3, 4, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_backward_weights_channels_nonfinite(c, bad):
    """A non-finite x value at a corner and one inside, then a non-finite dy value: dw (and
    db for dy) with the reference's NaN/inf pattern exactly (a lane past the block or a pad
    column must not bring one in, a real tap must not lose it)."""
    rng = np.random.default_rng(c + 40)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    x = rng.standard_normal((2, 15, 29, c)).astype(np.float32)
    dy = rng.standard_normal((2, 8, 15, c)).astype(np.float32)
    x[0, 14, 28, c - 1] = bad
    x[1, 6, 9, 0] = -bad
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, c, c), *args, True)
    assert not np.isfinite(rdw).all() and np.isfinite(rdw).any()
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, c, c), *args, True)
    same_nonfinite(dw, rdw)
    _close(db, rdb)
    x = rng.standard_normal((2, 15, 29, c)).astype(np.float32)
    dy[1, 7, 14, c - 1] = bad
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, c, c), *args, True)
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, c, c), *args, True)
    assert not np.isfinite(rdb).all()
    same_nonfinite(dw, rdw)
    same_nonfinite(db, rdb)


@pytest.mark.parametrize("c", (3, 6))
def test_backward_weights_channels_threaded_and_deterministic(c):
    """Two threads, two runs: the same bits (per-thread sums added in thread order), close to
    the reference; 20 images of 60x65 outputs pass the 65536-pixel float flush."""
    rng = np.random.default_rng(c + 60)
    x = rng.standard_normal((20, 120, 130, c)).astype(np.float32)
    dy = rng.standard_normal((20, 60, 65, c)).astype(np.float32)
    args = ((2, 2), (0, 1, 0, 1), (1, 1), 1)
    saved = fc.get_num_threads()
    fc.set_num_threads(2)
    try:
        runs = [_C.conv2d_backward_weights(dy, x, (3, 3, c, c), *args, True) for _ in range(2)]
    finally:
        fc.set_num_threads(saved)
    (dw, db), (dw2, db2) = runs
    assert np.array_equal(dw, dw2) and np.array_equal(db, db2)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, c, c), *args, True)
    _close(dw, rdw)
    _close(db, rdb)


@pytest.mark.parametrize("w", (31, 32, 33, 34, 35, 63, 64, 65, 66, 67, 97))
@pytest.mark.parametrize("h", (1, 2, 5, 6))
@pytest.mark.parametrize("pads", ((0, 1, 0, 1), (1, 1, 1, 1), (2, 2, 2, 0), (0, 0, 2, 2)))
def test_c1_forward_row_edges(w, h, pads):
    """The C=1 passes straight from the rows (few_channel_s2_c1.cpp, AVX-512): widths where
    a vector's 33 input columns end just inside, at or past the row (the full-load and masked
    paths, the broadcast 33rd column; the data pass's masked dx stores from column 2j - pl),
    odd and even output heights (a last output row alone), every left pad 0..2; batch 1 and 2
    (the _check covers all three passes)."""
    if h + pads[0] + pads[1] < 3:
        pytest.skip("window taller than the padded input")
    _check(w * 10 + h, 1 + w % 2, h, w, 1, 1, (3, 3), (2, 2), pads, (1, 1), bias=h % 2 == 0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf))
@pytest.mark.parametrize("where", ((0, 0), (0, 32), (0, 33), (8, 64), (9, 1), (4, 31)))
def test_c1_nonfinite_at_vector_edges(bad, where):
    """A non-finite x value at the columns where a vector's loads split (32: the second
    register's first lane, 33: the broadcast column, 64: past two vectors), at the top and
    bottom rows: the reference's NaN/inf pattern exactly in y and dw; a non-finite dy value
    at the matching place (dy column 16: a vector's first lane and the previous one's j - 1
    load) in dx; then an inf weight in the forward, which the reference multiplies by the
    padding's zeros too."""
    rng = np.random.default_rng(70)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    x = rng.standard_normal((2, 10, 66, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    x[1, where[0], where[1], 0] = bad
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *args)
    assert not np.isfinite(ref).all()
    same_nonfinite(_C.conv2d_forward(x, wt, None, *args), ref)
    dy = rng.standard_normal(ref.shape).astype(np.float32)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), wt.shape,
                                         *args, True)
    assert not np.isfinite(rdw).all()
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    same_nonfinite(dw, rdw)
    _close(db, rdb)
    dy[1, min(where[0] // 2, 4), min(where[1] // 2, 32), 0] = bad
    rdx = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, *args)
    assert not np.isfinite(rdx).all()
    same_nonfinite(_C.conv2d_backward_data(dy, wt, x.shape, *args), rdx)
    x = rng.standard_normal((2, 10, 66, 1)).astype(np.float32)
    wt[0, 2, 0, 0] = bad
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *args)
    assert not np.isfinite(ref).all()
    same_nonfinite(_C.conv2d_forward(x, wt, None, *args), ref)
