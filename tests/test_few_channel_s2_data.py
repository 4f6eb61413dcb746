"""3x3 stride-2 backward data with C = 3 and 6 channels in and out: the flat kernel of
csrc/cpu/few_channel_s2_data_flat.cpp (AVX-512; 'same'-like pads, where the plane grid is
dy's own; dy up to 15 columns, C = 3 from 5, C = 6 up to 8; wider rows from a dx of 4 MiB):
16 consecutive dy pixels a vector across rows and images, the left / upper / upper-left
neighbours as shifted registers (from 16 columns the row above loaded again) with masks at
the image's left column and top row, the four parity vectors merged to NHWC and
stored by masked stores one run of a plane row at a time (cropped at the left pad, the
row's end, and dx rows outside dx). The other shapes here run on the planes
(few_channel_s2_planes.cpp). Against the float64 oracle (test_direct_conv._close: rtol
1e-4, atol 1e-5 of the largest value).

Shapes: every pad 0..2 on the top and left, 0..1 bottom and right (the flat kernel takes
those with (pt + h - 1) / 2 + 1 == oh and the same for columns: 'same' at odd and even sizes,
and pads of 2); 1x1 .. 15-column dy (one position, under a vector, 7x7's 16 positions = one
vector a image, 14x14's 49 = vectors straddling images, 15 columns: the shift by 16 = OW + 1);
batch 1, 2, 3 and 5 (the image-aligned mask period: 16 / gcd); 2 threads (checked with
_C._threads_used) bit-equal run to run (whole images a thread, odd counts); NaN/inf in dy
at every image's corners and inside landing
exactly where the reference puts them; an inf weight (the planes' fallback, the direct
path). Wider shapes (23..112 columns) check that the rest stays right."""
import itertools

import numpy as np
import pytest

import fastconv as fc
from fastconv import _C
from fastconv import reference as R

from conv_oracle import same_nonfinite
from test_direct_conv import _close
from threads_used import threads_used


def _ref(dy, wt, x_shape, args):
    return R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args)


def _case(seed, n, h, w, c, pads):
    rng = np.random.default_rng(seed)
    args = ((2, 2), pads, (1, 1), 1)
    oh = (h + pads[0] + pads[1] - 3) // 2 + 1
    ow = (w + pads[2] + pads[3] - 3) // 2 + 1
    dy = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    return dy, wt, (n, h, w, c), args


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("n, h, w", ((1, 1, 1), (2, 3, 2), (1, 4, 5), (3, 7, 7), (5, 8, 8),
                                     (1, 9, 10), (2, 14, 14), (1, 13, 29), (3, 28, 28),
                                     (2, 11, 30), (1, 6, 31), (1, 9, 23), (3, 5, 24), (2, 7, 32),
                                     (1, 11, 47), (3, 4, 64), (2, 3, 112)))
@pytest.mark.parametrize("pads", list(itertools.product((0, 1, 2), (0, 1), (0, 1, 2), (0, 1))))
def test_against_reference(c, n, h, w, pads):
    if h + pads[0] + pads[1] < 3 or w + pads[2] + pads[3] < 3:
        pytest.skip("window larger than the padded input")
    dy, wt, x_shape, args = _case(c * 100000 + n * 1000 + h * w + sum(pads), n, h, w, c, pads)
    got = _C.conv2d_backward_data(dy, wt, x_shape, *args)
    assert got.shape == x_shape
    _close(got, _ref(dy, wt, x_shape, args))


@pytest.mark.parametrize("c, n, hw, pads", ((6, 565, 14, (0, 1, 0, 1)), (6, 1645, 7, (1, 1, 1, 1)),
                                        (3, 563, 14, (0, 1, 0, 1))))
def test_threaded_and_deterministic(c, n, hw, pads):
    """Over the 8M multiply-adds from which the pass runs on several threads (odd image
    counts: the threads' shares differ), 2 threads really used, two runs bit-equal."""
    dy, wt, x_shape, args = _case(c + n, n, hw, hw, c, pads)
    saved = fc.get_num_threads()
    fc.set_num_threads(2)
    try:
        with threads_used() as used:
            runs = [_C.conv2d_backward_data(dy, wt, x_shape, *args) for _ in range(2)]
    finally:
        fc.set_num_threads(saved)
    assert used.count == 2
    assert np.array_equal(runs[0], runs[1])
    _close(runs[0], _ref(dy, wt, x_shape, args))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("hw, pads", ((7, (1, 1, 1, 1)), (14, (0, 1, 0, 1)), (13, (2, 0, 2, 0)),
                                      (29, (1, 1, 1, 1))))
@pytest.mark.parametrize("corner", range(4))
def test_nonfinite(c, bad, hw, pads, corner):
    """NaN/inf in dy at one corner of every image (the masks at the left column and top row
    decide whether it leaks into the next pixel, row or image) and one inside: dx's NaN/inf
    pattern exactly as the reference's."""
    dy, wt, x_shape, args = _case(c + hw + corner, 3, hw, hw, c, pads)
    oh, ow = dy.shape[1], dy.shape[2]
    i, j = ((0, 0), (0, ow - 1), (oh - 1, 0), (oh - 1, ow - 1))[corner]
    dy[:, i, j, corner % c] = bad
    dy[1, oh // 2, ow // 2, c - 1] = -bad
    ref = _ref(dy, wt, x_shape, args)
    assert not np.isfinite(ref).all()
    same_nonfinite(_C.conv2d_backward_data(dy, wt, x_shape, *args), ref)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (3, 6))
def test_nonfinite_weight(c):
    """An inf weight: the flat kernel's masked lanes would meet it (0 * inf); the call goes
    to the direct path and gives the reference's NaN/inf pattern."""
    dy, wt, x_shape, args = _case(c + 40, 2, 7, 7, c, (1, 1, 1, 1))
    wt[1, 2, 0, c - 1] = np.inf
    ref = _ref(dy, wt, x_shape, args)
    same_nonfinite(_C.conv2d_backward_data(dy, wt, x_shape, *args), ref)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c, n, hw, pads", ((3, 330, 33, (1, 1, 1, 1)), (6, 160, 34, (0, 1, 0, 1))))
def test_wide_rows_from_4mib(c, n, hw, pads):
    """17 dy columns (the row above loaded again, not shifted in registers) over a dx of
    4 MiB (the wide kernel's limit; the next image's dx prefetched): odd and even sizes, NaN /
    inf at the corners of the first, a middle and the last image and inside, 1 and 2 threads
    (images split between them) bit-equal, the reference's values and NaN/inf pattern."""
    dy, wt, x_shape, args = _case(c + n, n, hw, hw, c, pads)
    assert 4 * np.prod(x_shape) >= 4 << 20
    oh, ow = dy.shape[1], dy.shape[2]
    assert ow == 17
    for k, (img, i, j) in enumerate(((0, 0, 0), (n // 2, 0, ow - 1), (n // 2 + 1, oh - 1, 0),
                                     (n - 1, oh - 1, ow - 1), (n // 3, 5, 8))):
        dy[img, i, j, k % c] = (np.nan, np.inf, -np.inf)[k % 3]
    ref = _ref(dy, wt, x_shape, args)
    saved = fc.get_num_threads()
    try:
        fc.set_num_threads(1)
        one = _C.conv2d_backward_data(dy, wt, x_shape, *args)
        fc.set_num_threads(2)
        with threads_used() as used:
            two = _C.conv2d_backward_data(dy, wt, x_shape, *args)
    finally:
        fc.set_num_threads(saved)
    assert used.count == 2
    same_nonfinite(one, ref)
    assert np.array_equal(np.nan_to_num(one), np.nan_to_num(two))
    assert np.array_equal(np.isnan(one), np.isnan(two))
