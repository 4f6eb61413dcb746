"""Stride-2 few-channel convs on the direct path: the column-pair split (few_channel_s2.h)
that packs their input rows, against the float64 oracle.

The split handles whole registers of column pairs (16 at avx512, 8 at avx2, 4 at the
baseline), the last register again overlapping, rows of fewer pairs than a register by
masked loads and stores (avx512), and the columns before and after one float at a time; so the widths here cover rows shorter than one register, exact multiples, one
column over, and odd widths, with left pads 0..3 (the pair start and its phase flip with the
pad's parity) and every channel count 1..8.
"""
import itertools

import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

from test_direct_conv import _check, _close


# (width, left pad): widths around 2 * 4, 2 * 8, 2 * 16 columns and longer odd rows
# (28..31 columns: 14 or 15 pairs, under one AVX-512 register: the masked short split)
WIDTHS_PADS = [(7, 1), (17, 0), (28, 0), (30, 1), (31, 2), (33, 1), (34, 2), (35, 3), (64, 0),
               (65, 1), (97, 2), (130, 3)]


@pytest.mark.parametrize("c", range(1, 9))
@pytest.mark.parametrize("width, pad", WIDTHS_PADS)
def test_stride2_3x3_all_passes(c, width, pad):
    # Cout != Cin on half the cases: the split reads Cin channels, the kernels write Cout.
    cout = c if width % 2 else max(1, 9 - c)
    _check(100 * c + width, 2, 9, width, c, cout, (3, 3), (2, 2), (1, 1, pad, 1), (1, 1))


@pytest.mark.parametrize("c, k", [(3, (5, 5)), (2, (2, 2)), (6, (4, 3)), (1, (7, 7))])
def test_stride2_other_kernels(c, k):
    _check(7, 1, 11, 71, c, 4, k, (2, 2), (k[0] // 2, k[0] // 2, k[1] // 2, (k[1] - 1) // 2), (1, 1))


def test_stride2_dilation_and_mixed_strides():
    _check(8, 1, 13, 70, 3, 5, (3, 3), (2, 2), (2, 2, 2, 2), (2, 2))
    _check(9, 1, 13, 70, 4, 3, (3, 3), (1, 2), (1, 1, 1, 1), (1, 1))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (1, 3, 6))
@pytest.mark.parametrize("col", (0, 1, 30, 65))
def test_stride2_nonfinite_lands_where_the_reference_puts_it(c, col):
    """A NaN in x at an even or odd column, inside the permuted pairs or outside them: y has
    NaN exactly where the reference has (a wrong phase or index would move it)."""
    rng = np.random.default_rng(col)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    x = rng.standard_normal((1, 7, 67, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    x[0, 3, col, c - 1] = np.nan
    y = _C.conv2d_forward(x, wt, None, *args)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *args)
    assert np.isnan(ref).any()
    assert np.array_equal(np.isnan(y), np.isnan(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(np.where(fin, y, 0), np.where(fin, ref, 0), rtol=1e-4, atol=1e-4)


def test_stride2_cases_take_the_direct_path():
    """The cases above test the split only if the direct path runs them under 'auto' too."""
    for c, width in itertools.product((1, 3, 6, 8), (35, 112)):
        algos = _C.conv_algorithm((2, 9, width, c), (3, 3, c, c), (2, 2), (1, 1, 1, 1), (1, 1), 1)
        assert algos["forward"] == "direct"


@pytest.mark.parametrize("cin, cout", list(itertools.product(range(1, 5), range(1, 5))))
@pytest.mark.parametrize("stride", (1, 2))
def test_pointwise_planar_passes(cin, cout, stride):
    """1x1 convs of 1..4 channels each side: the forward map, backward data's map (stride 1)
    and the weight pass run whole registers of pixels on planar registers
    (narrow_pointwise_planar.h), the rest pixel by pixel. Rows of 65 and
    70 columns (at stride 2 the last register must stay within the row), 3 images, and a
    pixel stream of 3*15*17 at stride 1 (runs of 512 pixels)."""
    for w in (65, 70):
        _check(w + cin, 3, 5, w, cin, cout, (1, 1), (stride, stride), (0, 0, 0, 0), (1, 1))
    _check(cout, 3, 15, 17, cin, cout, (1, 1), (stride, stride), (0, 0, 0, 0), (1, 1))


@pytest.mark.parametrize("c", range(5, 9))
@pytest.mark.parametrize("stride", (1, 2))
def test_pointwise_planar_maps_5_to_8_channels(c, stride):
    """Cin == Cout = 5..8: the forward map (and backward data's at stride 1) on planar
    registers (at avx512 only 5 and 6 at stride 1; run this at every level); the weight pass
    stays per pixel. Rows of 65 and 70 columns and a stream of
    3*15*17 pixels at stride 1."""
    for w in (65, 70):
        _check(w + c, 3, 5, w, c, c, (1, 1), (stride, stride), (0, 0, 0, 0), (1, 1))
    _check(c, 3, 15, 17, c, c, (1, 1), (stride, stride), (0, 0, 0, 0), (1, 1))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (5, 6))
@pytest.mark.parametrize("col", (0, 1, 14, 27, 28))
def test_stride2_short_rows_nonfinite(c, col):
    """Rows of 14 column pairs (29 columns, under one AVX-512 register: the masked short
    split) with an inf in x at the first, an inner, the last paired and the unpaired last
    column: y and dw (the direct weight pass packs the same rows) have the reference's
    NaN/inf pattern exactly, the rest close."""
    rng = np.random.default_rng(col + c)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    x = rng.standard_normal((2, 9, 29, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    x[1, 4, col, c - 1] = np.inf
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y, ref = _C.conv2d_forward(x, wt, None, *args), R.conv2d_forward(x64, w64, None, *args)
    assert not np.isfinite(ref).all()
    for f in (np.isnan, np.isposinf, np.isneginf):
        assert np.array_equal(f(y), f(ref))
    dy = rng.standard_normal((2, 5, 15, c)).astype(np.float32)
    dw, _ = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    rdw, _ = R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, True)
    assert not np.isfinite(rdw).all() and np.isfinite(rdw).any()
    for f in (np.isnan, np.isposinf, np.isneginf):
        assert np.array_equal(f(dw), f(rdw))
    fin = np.isfinite(rdw)
    _close(np.where(fin, dw, 0).astype(np.float32), np.where(fin, rdw, 0))


@pytest.mark.parametrize("n, h, w, cin, cout, pads", [
    (12, 61, 63, 6, 6, (1, 1, 1, 1)),    # items of output rows, odd sizes, x 1.1 MB
    (300, 15, 15, 6, 6, (1, 1, 1, 1)),   # items of whole images (groups), x 1.6 MB
    (8, 64, 66, 5, 7, (0, 1, 0, 1)),     # Cin != Cout, even sizes ('same' at stride 2)
    (7, 65, 67, 6, 6, (0, 0, 0, 0)),     # 'valid'
])
def test_stride2_weight_pass_with_prefetch(n, h, w, cin, cout, pads):
    """Stride-2 weight passes with x over 1 MiB, where the direct path prefetches the next
    item's rows between tap tiles (a wrong item's rows would cost time, never values: this
    checks the rows and images the items cover against the oracle, 1 and 2 threads)."""
    import fastconv
    prev = fastconv.get_num_threads()
    try:
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            _check(n + h, n, h, w, cin, cout, (3, 3), (2, 2), pads, (1, 1))
    finally:
        fastconv.set_num_threads(prev)
