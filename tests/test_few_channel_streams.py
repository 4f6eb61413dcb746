"""3x3 stride-1 same-size convs with few channels, the paths of issue 18 item 3 (helper Z),
against the float64 reference (conv_oracle.close: rtol 1e-4, atol 1e-5 x the largest magnitude):

- C = 1 by bands of 4 output rows (csrc/cpu/few_channel_flat.cpp band_conv, AVX-512, rows of 16
  columns or more; forward and backward data): heights 1..9 (no full band, a full band and a
  short last band of 1, 2 or 3 rows, bands touching both edges), widths of one vector, one
  vector plus one column, 28, 31, 45 and 67 (partial last vectors), every pad split summing to
  2 each way, batch 1 and 3, with and without bias, the fused activation, two threads, outputs
  of 8 MiB and more (streaming stores); NaN and
  inf in x and dy reach exactly the outputs the reference gives them (no neighbouring row
  or column, no padding multiplied), a non-finite weight (AVX-512) every output the
  reference's padding zeros make non-finite.
- C = 2..8 with the images of a group as one stream (few_channel_planes.cpp stream_conv and the
  weight pass's stream, AVX-512, images up to 32x32 = 1024 positions whose own blocks would
  leave a tenth of their lanes idle): batches that fill
  several groups with a short last one, images of one row, one column, under one vector and
  not multiples of 16 positions (the mask table's period lcm(H*W, 16) over several images),
  every pad split; a NaN or inf in the last row or column of one image must not reach the
  next image of the stream (a tap into the neighbouring image is masked like the padding).

At avx2 and the baseline the same shapes run the other levels' paths; the tests hold there too.
"""
import itertools

import numpy as np
import pytest

from fastconv import _C
from fastconv import functional as F
from fastconv import reference as R
from conv_oracle import check_conv_passes, close, same_nonfinite

# (top, bottom, left, right) summing to 2 each way: the output has the input's size
PADS = ((1, 1, 1, 1), (0, 2, 2, 0), (2, 0, 0, 2), (1, 1, 0, 2), (2, 0, 1, 1), (0, 2, 1, 1))
ARGS = ((1, 1), (1, 1, 1, 1), (1, 1), 1)


def _data(rng, n, h, w, c, bias=True):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    return x, wt, b


# ---- C = 1, bands of rows ----

@pytest.mark.parametrize("pads", PADS)
def test_c1_bands_shapes_and_pads(pads):
    rng = np.random.default_rng(sum(pads) * 7 + pads[0] + 3 * pads[2])
    for i, (h, w) in enumerate(itertools.product((1, 2, 3, 4, 5, 6, 7, 9), (16, 17, 28, 31, 45, 67))):
        x, wt, b = _data(rng, 1 + 2 * (i % 2), h, w, 1, bias=i % 3 != 0)
        check_conv_passes(rng, x, wt, b, ((1, 1), pads, (1, 1), 1))


@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 2, 2, 0)))
def test_c1_bands_streamed_stores(pads):
    """Outputs of 8 MiB or more with rows of a multiple of 16 columns are written by streaming
    stores (an odd height: a short last band); with a NaN in x its pattern."""
    rng = np.random.default_rng(3 + pads[0])
    n, h, w = 3, 723, 976  # 2.12M floats
    args = ((1, 1), pads, (1, 1), 1)
    x, wt, b = _data(rng, n, h, w, 1)
    x[1, 300, 16, 0] = np.nan
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y = _C.conv2d_forward(x, wt, b, *args)
    same_nonfinite(y, R.conv2d_forward(x64, w64, b.astype(np.float64), *args))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    close(_C.conv2d_backward_data(dy, wt, x.shape, *args),
          R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))


@pytest.mark.parametrize("activation", ("relu", "sigmoid"))
def test_c1_bands_fused_activation(activation):
    rng = np.random.default_rng(5)
    x, wt, b = _data(rng, 3, 11, 29, 1)
    y = F.conv2d(x, wt, b, strides=1, padding="same", activation=activation)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *ARGS)
    ref = {"relu": lambda v: np.maximum(v, 0.0), "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}[activation](ref)
    close(y, ref)


def test_c1_bands_threaded_and_deterministic():
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        rng = np.random.default_rng(8)
        for n, h, w in ((64, 28, 28), (5, 57, 56), (300, 9, 20)):
            x, wt, b = _data(rng, n, h, w, 1)
            check_conv_passes(rng, x, wt, b, ARGS)
            y = _C.conv2d_forward(x, wt, b, *ARGS)
            assert np.array_equal(y, _C.conv2d_forward(x, wt, b, *ARGS))
    finally:
        _C.set_num_threads(old)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 2, 2, 0), (2, 0, 0, 2)))
def test_c1_bands_nonfinite_match_reference(bad, pads):
    """Masked loads read no padding, no neighbouring row past the row's end and no other
    image: a non-finite x (forward) or dy (backward data) gives exactly the reference's
    pattern, also at the image's corners, a band's first and last rows and a vector's last
    column; a non-finite weight makes every output non-finite where the reference does."""
    rng = np.random.default_rng(60 + sum(pads))
    n, h, w = 2, 10, 37
    args = ((1, 1), pads, (1, 1), 1)
    x, wt, b = _data(rng, n, h, w, 1)
    x[0, 0, 0, 0] = bad
    x[0, 3, 15, 0] = bad  # a band's last row, a vector's last column
    x[0, 4, 16, 0] = bad  # the next band's first row, the next vector's first column
    x[1, h - 1, w - 1, 0] = bad
    x[1, 5, 36, 0] = bad
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y = _C.conv2d_forward(x, wt, b, *args)
    same_nonfinite(y, R.conv2d_forward(x64, w64, b.astype(np.float64), *args))
    assert not np.isfinite(y).all()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy[1, 0, w - 1, 0] = bad
    dy[0, h - 1, 0, 0] = bad
    dy[0, 7, 32, 0] = bad
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    same_nonfinite(dx, R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))
    if _C.isa_level() != "avx512":
        return  # the row kernels of the other levels skip padded taps (0 * inf never made)
    x, wt, b = _data(rng, n, h, w, 1)
    wt[2, 0, 0, 0] = bad
    w64 = wt.astype(np.float64)
    y = _C.conv2d_forward(x, wt, b, *args)
    ref = R.conv2d_forward(x.astype(np.float64), w64, b.astype(np.float64), *args)
    assert np.array_equal(np.isfinite(y), np.isfinite(ref))


# ---- C = 2..8, images as one stream ----

@pytest.mark.parametrize("c", range(2, 9))
def test_stream_shapes_and_pads(c):
    rng = np.random.default_rng(70 + c)
    sizes = ((1, 1), (1, 9), (11, 1), (3, 4), (7, 7), (5, 13), (14, 14), (9, 17), (32, 32))
    for i, ((h, w), pads) in enumerate(zip(sizes * 2, PADS * 3)):
        x, wt, b = _data(rng, 1 + i % 5, h, w, c, bias=i % 4 != 0)
        check_conv_passes(rng, x, wt, b, ((1, 1), pads, (1, 1), 1))


@pytest.mark.parametrize("c, n, h, w", [(6, 170, 7, 7), (3, 45, 14, 14), (2, 7, 28, 28),
                                        (5, 33, 3, 17), (3, 21, 9, 10), (7, 90, 5, 5)])
def test_stream_several_groups(c, n, h, w):
    """Batches of several groups (forward: 48 KiB of planes a group, C=6 7x7: 41 images;
    weight pass: about 4096 positions), the last group short."""
    rng = np.random.default_rng(c * 100 + n)
    for pads in ((1, 1, 1, 1), (2, 0, 0, 2)):
        x, wt, b = _data(rng, n, h, w, c)
        check_conv_passes(rng, x, wt, b, ((1, 1), pads, (1, 1), 1))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_stream_nonfinite_stays_in_its_image(c, bad):
    """The last row of image 0 and the first row of image 2 hold a non-finite value next to the
    images before and after them in the stream: the forward and backward data outputs are
    non-finite exactly where the reference's are (never in the neighbouring images), the
    weight pass's dw where the reference's is."""
    rng = np.random.default_rng(90 + c)
    n, h, w = 5, 7, 7
    for pads in ((1, 1, 1, 1), (0, 2, 2, 0), (2, 0, 0, 2)):
        args = ((1, 1), pads, (1, 1), 1)
        x, wt, b = _data(rng, n, h, w, c)
        x[0, h - 1, 3, c - 1] = bad
        x[2, 0, w - 1, 0] = bad
        x[3, h - 1, w - 1, 1] = bad
        x64, w64 = x.astype(np.float64), wt.astype(np.float64)
        y = _C.conv2d_forward(x, wt, b, *args)
        ref = R.conv2d_forward(x64, w64, b.astype(np.float64), *args)
        same_nonfinite(y, ref)
        assert np.isfinite(y[1]).all() and np.isfinite(y[4]).all()
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dy[1, h - 1, 0, 0] = bad
        dy[3, 0, 2, c - 1] = bad
        dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
        same_nonfinite(dx, R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))
        assert np.isfinite(dx[0]).all() and np.isfinite(dx[2]).all() and np.isfinite(dx[4]).all()
        dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
        rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, True)
        assert not np.isfinite(dw[~np.isfinite(rdw)]).any()
        same_nonfinite(db, rdb)


def test_stream_threaded_and_deterministic():
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        rng = np.random.default_rng(11)
        for c, n, h, w in ((3, 64, 14, 14), (6, 256, 7, 7), (4, 50, 10, 9)):
            x, wt, b = _data(rng, n, h, w, c)
            check_conv_passes(rng, x, wt, b, ARGS)
            dy = rng.standard_normal(x.shape).astype(np.float32)
            a = _C.conv2d_backward_weights(dy, x, wt.shape, *ARGS, True)
            a2 = _C.conv2d_backward_weights(dy, x, wt.shape, *ARGS, True)
            assert np.array_equal(a[0], a2[0]) and np.array_equal(a[1], a2[1])
            assert np.array_equal(_C.conv2d_forward(x, wt, b, *ARGS), _C.conv2d_forward(x, wt, b, *ARGS))
    finally:
        _C.set_num_threads(old)
