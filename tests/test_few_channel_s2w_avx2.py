"""The weight pass of 3x3 stride-2 convs with C = 3 or 6 channels in and out at the avx2 level
(csrc/cpu/few_channel_s2w_avx2.cpp's rule; few_channel_s2w_rows3_avx2.cpp and
few_channel_s2w_rows6_avx2.cpp: straight from the NHWC rows, masked loads where a patch crosses
a row end, a zero row for the rows outside x). At AVX-512 the same shapes run
few_channel_s2_patch.cpp, at the baseline the planes and the direct path: the cases hold at
every level.

Against the float64 reference (fastconv.reference), dw and db within 1e-5 of the reference's
largest magnitude (atol, no rtol). Widths put a row's pairs at every place of the 8-pair
registers and past them (1..41 columns, 47..57), heights 1..7, seven pad sets (left and top
pad 0..2, bottom / right 0..2), batch 1..3; many small images (and thread chunks / C = 6's
row blocks crossing images), tall images;
the sweep's shapes scaled down; two threads bit-equal run to run; NaN / inf in x (corners, row
ends, a column no output reads) and in dy: exactly the reference's pattern."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import _C
from fastconv import reference as R

from conv_oracle import close_max, same_nonfinite
from threads_used import threads_used

PADS = ((0, 1, 0, 1), (1, 1, 1, 1), (2, 2, 2, 0), (0, 0, 2, 2), (1, 0, 0, 1), (2, 1, 1, 0),
        (0, 0, 0, 0))


def _out(h, w, pads):
    return (h + pads[0] + pads[1] - 3) // 2 + 1, (w + pads[2] + pads[3] - 3) // 2 + 1


def _pass(x, dy, c, pads, bias=True):
    args = ((2, 2), pads, (1, 1), 1)
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, c, c), *args, bias)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, c, c), *args, bias)
    return dw, db, rdw, rdb


def _case(seed, n, h, w, c, pads, bias=True):
    oh, ow = _out(h, w, pads)
    if oh < 1 or ow < 1:
        pytest.skip("window larger than the padded input")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
    dw, db, rdw, rdb = _pass(x, dy, c, pads, bias)
    close_max(dw, rdw)
    if bias:
        close_max(db, rdb)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("w", list(range(1, 42)) + [47, 48, 49, 50, 51, 55, 56, 57])
@pytest.mark.parametrize("pads", PADS)
def test_row_widths(c, w, pads):
    h = 3 + w % 5
    _case(w * 17 + c + sum(pads), 1 + w % 3, h, w, c, pads, bias=w % 2 == 0)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("h", (1, 2, 3, 4, 5, 6, 7))
@pytest.mark.parametrize("w", (4, 7, 14, 17))
@pytest.mark.parametrize("pads", PADS)
def test_heights(c, h, w, pads):
    _case(h * 31 + w + c + sum(pads), 2, h, w, c, pads)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("n, hw", ((8, 7), (8, 14), (8, 28), (1, 112), (2, 56), (4, 28),
                                   (1, 14), (1, 7)))
def test_sweep_shapes_scaled(c, n, hw):
    """The sweep's square 'same' shapes (N=256 7x7..112x112, N=32 28x28, N=1 112x112), fewer
    images."""
    oh = -(-hw // 2)
    tot = max(0, (oh - 1) * 2 + 3 - hw)
    pads = (tot // 2, tot - tot // 2, tot // 2, tot - tot // 2)
    _case(n * 1000 + hw + c, n, hw, hw, c, pads)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("n, h, w", ((37, 7, 7), (29, 14, 14), (13, 9, 5), (5, 3, 3),
                                     (1, 203, 31), (2, 161, 45), (1, 64, 90)))
def test_items(c, n, h, w):
    """Items of many whole images with a remainder item, and bands of one tall image."""
    _case(n + h * 7 + w + c, n, h, w, c, (1, 1, 1, 1))


@pytest.mark.parametrize("c", (3, 6))
def test_threaded_and_deterministic(c):
    rng = np.random.default_rng(15 + c)
    # over the 2M multiply-adds from which the pass runs on several threads
    x = rng.standard_normal((141, 28, 27, c)).astype(np.float32)
    pads = (0, 1, 1, 1)
    oh, ow = _out(28, 27, pads)
    dy = rng.standard_normal((141, oh, ow, c)).astype(np.float32)
    saved = fc.get_num_threads()
    fc.set_num_threads(2)
    try:
        with threads_used() as used:
            runs = [_pass(x, dy, c, pads) for _ in range(2)]
    finally:
        fc.set_num_threads(saved)
    assert used.count == 2
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    close_max(runs[0][0], runs[0][2])
    close_max(runs[0][1], runs[0][3])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("where", ((0, 0, 0), (1, 13, 13), (0, 6, 13), (2, 13, 0), (1, 5, 7),
                                   (2, 12, 12)))
@pytest.mark.parametrize("pads", ((0, 1, 0, 1), (1, 1, 1, 1), (0, 0, 0, 0)))
def test_nonfinite_x(c, bad, where, pads):
    """With pads (0, 0, 0, 0) at 14 columns, column 13 (and row 13) is read by no output: the
    reference's dw stays finite there."""
    rng = np.random.default_rng(74 + c)
    x = rng.standard_normal((3, 14, 14, c)).astype(np.float32)
    x[where[0], where[1], where[2], c - 1] = bad
    oh, ow = _out(14, 14, pads)
    dy = rng.standard_normal((3, oh, ow, c)).astype(np.float32)
    dw, db, rdw, rdb = _pass(x, dy, c, pads)
    same_nonfinite(dw, rdw, close_max)
    close_max(db, rdb)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
@pytest.mark.parametrize("where", ((0, 0, 0), (1, 6, 6), (2, 3, 6), (0, 6, 0)))
def test_nonfinite_dy(c, bad, where):
    rng = np.random.default_rng(75 + c)
    x = rng.standard_normal((3, 14, 14, c)).astype(np.float32)
    dy = rng.standard_normal((3, 7, 7, c)).astype(np.float32)
    dy[where[0], where[1], where[2], 0] = bad
    dw, db, rdw, rdb = _pass(x, dy, c, (0, 1, 0, 1))
    same_nonfinite(dw, rdw, close_max)
    same_nonfinite(db, rdb, close_max)


@pytest.mark.parametrize("c", (3, 6))
def test_no_bias(c):
    rng = np.random.default_rng(3 + c)
    x = rng.standard_normal((5, 14, 14, c)).astype(np.float32)
    dy = rng.standard_normal((5, 7, 7, c)).astype(np.float32)
    dw, db, rdw, _ = _pass(x, dy, c, (0, 1, 0, 1), bias=False)
    close_max(dw, rdw)
