"""The few-channel weight passes reworked in issue 18 item 3 (helper G), against the float64
reference (conv_oracle.close: rtol 1e-4, atol 1e-5 x the largest magnitude):

- 3x3 stride-1 C=1 (csrc/cpu/few_channel_flat.cpp, AVX-512): the shifted-streams form (x shifted
  per kernel column, dy per kernel row) on odd sizes, images under one vector, one row, one
  column, every pad split summing to 2, batch 1..3, images past the mask table (per-image mask
  chunks), two threads; NaN and inf in x or dy reach dw where the reference has them.
- 3x3 stride-1 C=2..7 (few_channel_planes.cpp): groups of images with the next group's prefetch
  and the tiles over a group's images (the last group short, one image a group) and C=6, now
  taken there at every size.
- 1x1 (narrow_pointwise.cpp): blocks of output rows with register tails (planar registers,
  1..4 channels: rows under one register, odd heights so that image boundaries break the row
  spacing, the tensor's last rows whose tail would read past x or dy), 4..8 channels a side
  with 16 / C pixels a vector (AVX-512; row ends and the tensor's end through zeroed copies),
  the per-pixel rows up to 16 channels, 17..24 channels both sides at stride 1 (AVX-512: two
  16-lane passes), the bias gradient from the contiguous channel sums (every channel count
  1..16, and 17, 20, 23, 24), two threads; NaN in x off the stride grid never reaches dw, NaN
  on it does.

At avx2 and the baseline the same shapes run the other levels' paths; the tests hold there too.
"""
import itertools

import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from conv_oracle import check_conv_passes, close

SAME3 = (1, 1, 1, 1)
PADS3 = ((1, 1, 1, 1), (0, 2, 2, 0), (2, 0, 0, 2), (1, 1, 0, 2), (2, 0, 1, 1), (0, 2, 1, 1))


def _weights(rng, dy, x, shape, args, bias=True):
    dw, db = _C.conv2d_backward_weights(dy, x, shape, *args, bias)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), shape, *args, bias)
    return dw, db, rdw, rdb


def _check_weights(rng, n, h, w, cin, cout, k, stride, pads, bias=True):
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    oh = (h + pads[0] + pads[1] - k) // stride + 1
    ow = (w + pads[2] + pads[3] - k) // stride + 1
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    args = ((stride, stride), pads, (1, 1), 1)
    dw, db, rdw, rdb = _weights(rng, dy, x, (k, k, cin, cout), args, bias)
    close(dw, rdw)
    if bias:
        close(db, rdb)


# ---- 3x3 stride 1, C = 1 ----

@pytest.mark.parametrize("pads", PADS3)
def test_c1_shapes_and_pads(pads):
    rng = np.random.default_rng(sum(pads) * 7 + pads[0])
    for i, (h, w) in enumerate(((1, 1), (1, 9), (11, 1), (3, 4), (7, 7), (5, 13), (9, 17), (6, 40),
                                (28, 28), (33, 31))):
        _check_weights(rng, 1 + i % 3, h, w, 1, 1, 3, 1, pads, bias=i % 2 == 0)


@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 2, 2, 0)))
def test_c1_many_small_images(pads):
    """Float sums carried over images and flushed to double every 4096 positions: 7x7 and
    14x14 batches that flush mid-batch, and with a partial last stretch."""
    rng = np.random.default_rng(pads[0] + 2)
    for n, hw in ((300, 7), (97, 14), (9, 30)):
        _check_weights(rng, n, hw, hw, 1, 1, 3, 1, pads)


def test_c1_past_the_mask_table():
    """More than 65536 positions an image: masks per image in chunks of 256 vectors (a chunk
    boundary inside a row, a partial last chunk)."""
    rng = np.random.default_rng(5)
    _check_weights(rng, 2, 259, 263, 1, 1, 3, 1, SAME3)
    _check_weights(rng, 1, 257, 256, 1, 1, 3, 1, (0, 2, 2, 0))


def test_c1_threaded_and_deterministic():
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        rng = np.random.default_rng(8)
        x = rng.standard_normal((64, 30, 29, 1)).astype(np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        args = ((1, 1), SAME3, (1, 1), 1)
        dw, db, rdw, rdb = _weights(rng, dy, x, (3, 3, 1, 1), args)
        close(dw, rdw)
        close(db, rdb)
        dw2, db2 = _C.conv2d_backward_weights(dy, x, (3, 3, 1, 1), *args, True)
        assert np.array_equal(dw, dw2) and np.array_equal(db, db2)
    finally:
        _C.set_num_threads(old)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("where", ("x", "dy"))
def test_c1_nonfinite_propagates(bad, where):
    """Every tap the reference makes non-finite is non-finite, at an image corner and inside."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 7, 13, 1)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    t = x if where == "x" else dy
    t[0, 3, 5, 0] = bad
    t[1, 0, 12, 0] = bad
    dw, db, rdw, rdb = _weights(rng, dy, x, (3, 3, 1, 1), ((1, 1), SAME3, (1, 1), 1))
    assert not np.isfinite(rdw).all()
    assert not np.isfinite(dw[~np.isfinite(rdw)]).any()
    both = np.isfinite(rdw) & np.isfinite(dw)
    close(dw[both], rdw[both])
    assert np.isfinite(db).all() == np.isfinite(rdb).all()


# ---- 3x3 stride 1, C = 2..7: groups of images, prefetch of the next group ----

@pytest.mark.parametrize("c, n, hw", [(3, 250, 7), (6, 100, 7), (6, 9, 56), (2, 40, 20), (7, 11, 30),
                                      (3, 9, 65), (6, 2, 9)])
def test_planes_groups(c, n, hw):
    rng = np.random.default_rng(c * 100 + n)
    x = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    check_conv_passes(rng, x, wt, rng.standard_normal(c).astype(np.float32), ((1, 1), SAME3, (1, 1), 1))


@pytest.mark.parametrize("pads", PADS3)
def test_planes_c6_pads(pads):
    rng = np.random.default_rng(60 + pads[0] * 3 + pads[2])
    for i, (h, w) in enumerate(((1, 1), (3, 4), (7, 7), (5, 13), (14, 14), (9, 17))):
        _check_weights(rng, 1 + i % 3, h, w, 6, 6, 3, 1, pads, bias=i % 2 == 0)


@pytest.mark.parametrize("c", range(2, 8))
@pytest.mark.parametrize("n, h, w", [(37, 7, 7), (3, 14, 14), (5, 13, 11), (2, 40, 36), (1, 9, 70)])
def test_planes_db_in_the_tiles(c, n, h, w):
    """db summed in the first C tiles' passes (one channel each) over the dy planes, for every
    C = 2..7 with images as one stream (7x7, 14x14, 13x11) and image by image (40x36, 9x70),
    batch 1 and more; the other passes' results are unchanged by it, and need_db=False still
    gives no db. Values around 100 so that a dropped or doubled vector shows past the tolerance."""
    rng = np.random.default_rng(c * 1000 + n * h + w)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    dy = (rng.standard_normal((n, h, w, c)) + 100.0 * (np.arange(c) + 1)).astype(np.float32)
    args = ((1, 1), SAME3, (1, 1), 1)
    dw, db, rdw, rdb = _weights(rng, dy, x, (3, 3, c, c), args)
    close(dw, rdw)
    close(db, rdb)
    dw2, db2 = _C.conv2d_backward_weights(dy, x, (3, 3, c, c), *args, False)
    assert db2 is None and np.array_equal(dw2, dw)


@pytest.mark.parametrize("c", (3, 6, 7))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_planes_db_nonfinite_channel(c, bad):
    """A NaN or inf in one channel of dy reaches that channel's db (summed in its own tile's
    pass) and no other channel's."""
    rng = np.random.default_rng(c)
    n, h, w = 9, 14, 14
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    dy = rng.standard_normal((n, h, w, c)).astype(np.float32)
    co = c - 1
    dy[4, 13, 13, co] = bad  # the last position of an image in the middle of the stream
    args = ((1, 1), SAME3, (1, 1), 1)
    dw, db, rdw, rdb = _weights(rng, dy, x, (3, 3, c, c), args)
    assert not np.isfinite(db[co]) and not np.isfinite(rdb[co])
    keep = np.arange(c) != co
    close(db[keep], rdb[keep])
    assert np.array_equal(np.isfinite(dw), np.isfinite(rdw))


# ---- 1x1 ----

@pytest.mark.parametrize("stride", (1, 2))
def test_pointwise_row_blocks(stride):
    """Every channel pair 1..4 (planar registers with tails; 4 -> 4 packed), 5..8 (packed), 16
    and 3 -> 16 (pixels): widths under one register and not multiples of it, odd heights (an
    image's last row is not sh rows before the next image's first), batches whose rows make
    several blocks."""
    rng = np.random.default_rng(stride)
    pairs = itertools.chain(itertools.product((1, 2, 3, 4), repeat=2),
                            ((5, 5), (6, 6), (7, 7), (8, 8), (16, 16), (3, 16)))
    for cin, cout in pairs:
        for n, h, w in ((3, 7, 7), (2, 9, 30), (1, 1, 33), (4, 13, 3), (2, 57, 20)):
            _check_weights(rng, n, h, w, cin, cout, 1, stride, (0, 0, 0, 0), bias=(h + cin) % 2 == 1)


@pytest.mark.parametrize("c", (17, 20, 23, 24))
def test_pointwise_wide_weights(c):
    """17..24 channels a side at stride 1 (AVX-512: two 16-lane passes per pixel; the GEMM
    elsewhere and at stride 2): stream runs with a tail whose 16-lane dy loads would pass the
    tensor's end, the bias's channel sums (oc / gcd(16, oc) up to 23 vectors)."""
    rng = np.random.default_rng(c)
    for stride, (n, h, w) in itertools.product((1, 2), ((1, 1, 1), (2, 5, 7), (3, 28, 28), (1, 33, 31))):
        _check_weights(rng, n, h, w, c, c, 1, stride, (0, 0, 0, 0), bias=(n + h) % 2 == 1)
    x = rng.standard_normal((2, 9, 11, c)).astype(np.float32)
    algo = _C.conv_algorithm(x.shape, (1, 1, c, c), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert algo["backward_weights"] == ("direct" if _C.isa_level() == "avx512" else "im2col"), algo


@pytest.mark.parametrize("oc", range(1, 17))
def test_pointwise_bias_every_channel_count(oc):
    """The bias gradient's channel sums (oc / gcd(16, oc) vectors a period) and their tails."""
    rng = np.random.default_rng(oc)
    for stride, (n, h, w) in itertools.product((1, 2), ((2, 5, 7), (3, 28, 28))):
        _check_weights(rng, n, h, w, 2, oc, 1, stride, (0, 0, 0, 0))


def test_pointwise_threaded_blocks():
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        rng = np.random.default_rng(4)
        for c, stride in ((3, 2), (16, 2), (3, 1), (6, 1), (6, 2), (24, 1)):
            _check_weights(rng, 64, 28, 28, c, c, 1, stride, (0, 0, 0, 0))
    finally:
        _C.set_num_threads(old)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (1, 3, 16))
def test_pointwise_strided_nan(c):
    """NaN in x off the stride-2 grid (odd rows and columns: read by the registers, masked or
    dropped) leaves dw finite and right; NaN on the grid makes its input channel's row NaN."""
    rng = np.random.default_rng(20 + c)
    x = rng.standard_normal((2, 10, 14, c)).astype(np.float32)
    dy = rng.standard_normal((2, 5, 7, c)).astype(np.float32)
    x[0, 3, :, 0] = np.nan  # an odd row
    x[1, :, 5, c - 1] = np.nan  # an odd column
    x[1, 9, 13, 0] = np.nan  # the tensor's last pixel, off the grid
    args = ((2, 2), (0, 0, 0, 0), (1, 1), 1)
    dw, db, rdw, rdb = _weights(rng, dy, x, (1, 1, c, c), args)
    close(dw, rdw)
    close(db, rdb)
    x[1, 8, 10, 0] = np.nan  # on the grid: in the last output row
    dw, db, rdw, rdb = _weights(rng, dy, x, (1, 1, c, c), args)
    assert np.isnan(rdw[0, 0, 0]).all() and np.isnan(dw[0, 0, 0]).all()
    close(dw[0, 0, 1:], rdw[0, 0, 1:])
