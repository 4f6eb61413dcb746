"""The C = 3 and C = 6 weight passes of 3x3 stride-2 convs straight from the NHWC rows
(csrc/cpu/few_channel_s2_patch.cpp, AVX-512; at avx2 and the baseline the planes (C = 3) and
the direct path (C = 6) run these shapes): against the float64 oracle (test_direct_conv._close:
rtol 1e-4, atol 1e-5 of the largest value).

Each output pixel's patch row is one masked load of 9 floats (C = 3), or of 16 plus the
last 2 floats of the three rows merged into one vector (C = 6); the masks drop the padding's
columns at both row ends (left pads 0..2, odd and even widths: the last pixel's third column
in or out of the row) and whole rows outside x (top and bottom pads). So the shapes cover
every pad, odd/even sizes, one output row or column, batch 1 and more, bias or not, 1 and 2
threads (deterministic), more pixels than one lane flush (65536 a thread) and x over 1 MiB
(the next rows prefetched), and NaN/inf at the edges reaching dw and db where the
reference puts them."""
import itertools

import numpy as np
import pytest

import fastconv as fc
from fastconv import _C
from fastconv import reference as R

from test_direct_conv import _close

def _run(x, dy, pads, bias=True):
    args = ((2, 2), pads, (1, 1), 1)
    c = x.shape[3]
    got = _C.conv2d_backward_weights(dy, x, (3, 3, c, c), *args, bias)
    ref = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), (3, 3, c, c),
                                    *args, bias)
    return got, ref


def _shapes(n, h, w, pads, seed, c=3):
    rng = np.random.default_rng(seed)
    oh, ow = (h + pads[0] + pads[1] - 3) // 2 + 1, (w + pads[2] + pads[3] - 3) // 2 + 1
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
    return x, dy


# any width (C = 3 under 14 columns from the row kernel): one output column (3x2, 4x4), 7x7,
# 8x9; from 28 output columns (57, 113) the packed C = 3 rows
SHAPES = ((1, 14, 14), (3, 15, 29), (2, 28, 28), (1, 3, 57), (2, 9, 113), (1, 56, 14), (3, 7, 16),
          (2, 3, 2), (3, 7, 7), (1, 8, 9), (2, 4, 4))


@pytest.mark.parametrize("c, n, h, w", [(c,) + s for c in (3, 6) for s in SHAPES])
@pytest.mark.parametrize("pads", list(itertools.product((0, 1, 2), (0, 1), (0, 1, 2), (0, 1))))
def test_weight_pass_against_reference(c, n, h, w, pads):
    if h + pads[0] + pads[1] < 3 or w + pads[2] + pads[3] < 3:
        pytest.skip("window larger than the padded input")
    x, dy = _shapes(n, h, w, pads, n * 1000 + h * w + sum(pads), c)
    bias = (h + w + sum(pads)) % 2 == 0
    got, ref = _run(x, dy, pads, bias)
    _close(got[0], ref[0])
    if bias:
        _close(got[1], ref[1])


@pytest.mark.parametrize("c", (3, 6))
def test_threaded_deterministic_flush_and_prefetch(c):
    # 40 images of 56x57: x 1.5 MB (its rows prefetched); 100 images of 30x56: 84k output
    # pixels (a lane flush mid-pass at 1 thread).
    for n, h, w in ((40, 56, 57), (100, 30, 56)):
        x, dy = _shapes(n, h, w, (0, 1, 0, 1), n, c)
        saved = fc.get_num_threads()
        try:
            runs = {}
            for t in (1, 2):
                fc.set_num_threads(t)
                a, b = _run(x, dy, (0, 1, 0, 1))[0], _run(x, dy, (0, 1, 0, 1))[0]
                assert all(np.array_equal(u, v) for u, v in zip(a, b))
                runs[t] = a
        finally:
            fc.set_num_threads(saved)
        _, ref = _run(x, dy, (0, 1, 0, 1))
        for t in (1, 2):
            _close(runs[t][0], ref[0])
            _close(runs[t][1], ref[1])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("where", ((0, 0, 0), (0, 28, 2), (14, 0, 1), (14, 28, 0), (7, 17, 2),
                                   (6, 18, 1)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (2, 2, 2, 2), (0, 0, 0, 0)))
@pytest.mark.parametrize("c", (3, 6))
def test_nonfinite_x_lands_where_the_reference_puts_it(bad, where, pads, c):
    x, dy = _shapes(2, 15, 29, pads, 5, c)
    x[1, where[0], where[1], where[2] + (c - 3) * (where[2] % 2)] = bad  # C = 6: ci 0, 4, 2
    got, ref = _run(x, dy, pads)
    for g, r in zip(got, ref):
        assert np.array_equal(np.isnan(g), np.isnan(r))
        assert np.array_equal(np.isposinf(g), np.isposinf(r))
        assert np.array_equal(np.isneginf(g), np.isneginf(r))
        fin = np.isfinite(r)
        _close(np.where(fin, g, 0).astype(np.float32), np.where(fin, r, 0))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf))
@pytest.mark.parametrize("c", (3, 6))
def test_nonfinite_dy(bad, c):
    x, dy = _shapes(2, 15, 30, (0, 1, 0, 1), 6, c)
    dy[0, 0, 0, c - 1] = bad
    dy[1, 6, 14, 0] = -bad
    got, ref = _run(x, dy, (0, 1, 0, 1))
    assert not np.isfinite(ref[0]).all() and not np.isfinite(ref[1]).all()
    for g, r in zip(got, ref):
        assert np.array_equal(np.isnan(g), np.isnan(r))
        assert np.array_equal(np.isinf(g), np.isinf(r))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf))
@pytest.mark.parametrize("where", ((0, 0, 0), (8, 60, 2), (4, 30, 1), (5, 33, 0), (1, 59, 2),
                                   (7, 1, 1)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (2, 2, 2, 2), (0, 0, 0, 0)))
def test_nonfinite_x_packed_rows(bad, where, pads):
    """C = 3 from 28 output columns: the three patch rows packed in two vectors (row 1
    split across them): a non-finite x at the corners, the last columns and inside."""
    x, dy = _shapes(2, 9, 61, pads, 7)
    assert dy.shape[2] >= 28
    x[0, where[0], where[1], where[2]] = bad
    x[1, 8 - where[0], 60 - where[1], 2 - where[2]] = -bad
    got, ref = _run(x, dy, pads)
    for g, r in zip(got, ref):
        assert np.array_equal(np.isnan(g), np.isnan(r))
        assert np.array_equal(np.isposinf(g), np.isposinf(r))
        assert np.array_equal(np.isneginf(g), np.isneginf(r))
        fin = np.isfinite(r)
        _close(np.where(fin, g, 0).astype(np.float32), np.where(fin, r, 0))


# The C = 6 forward under 8 output columns (few_channel_s2_patch_fwd.cpp): rows of 5..7
# pixels (a group per row, through a copy), up to 4 columns one stream per image across row
# ends (whole groups, the last one again from the end, under 8 pixels through a copy), every
# pad, odd/even, batch 1-3, bias or not.
FWD_SHAPES = ((1, 3, 2), (3, 7, 7), (2, 14, 14), (1, 8, 9), (2, 4, 4), (1, 15, 13), (3, 9, 15),
              (1, 1, 3))


@pytest.mark.parametrize("n, h, w", FWD_SHAPES)
@pytest.mark.parametrize("pads", list(itertools.product((0, 1, 2), (0, 1), (0, 1, 2), (0, 1))))
def test_forward_c6_narrow(n, h, w, pads):
    if h + pads[0] + pads[1] < 3 or w + pads[2] + pads[3] < 3:
        pytest.skip("window larger than the padded input")
    rng = np.random.default_rng(n * 100 + h * w + sum(pads))
    x = rng.standard_normal((n, h, w, 6)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32) if (h + w) % 2 else None
    args = ((2, 2), pads, (1, 1), 1)
    y = _C.conv2d_forward(x, wt, b, *args)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                           None if b is None else b.astype(np.float64), *args)
    _close(y, ref)


# C = 6 under 8 output columns (few_channel_s2_patch_fwd.cpp), C = 3 at any width (_fwd3.cpp).
@pytest.mark.parametrize("c, h, w", ((6, 14, 13), (6, 7, 7), (6, 5, 6), (3, 14, 13), (3, 7, 7), (3, 30, 41)))
def test_forward_patch_relu_threads_deterministic(c, h, w):
    rng = np.random.default_rng(61 if c == 6 else 63)
    x = rng.standard_normal((64, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    args = ((2, 2), (0, 1, 0, 1), (1, 1), 1)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    assert (ref < 0).any()
    saved = fc.get_num_threads()
    try:
        for t in (1, 2):
            fc.set_num_threads(t)
            a, c = (_C.conv2d_forward(x, wt, b, *args, "relu") for _ in range(2))
            assert np.array_equal(a, c)
            _close(a, np.maximum(ref, 0.0))
    finally:
        fc.set_num_threads(saved)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("where", ((0, 0, 0), (0, 1, 5), (1, 0, 4), (1, 1, 1), (0.5, 0.5, 3)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (2, 2, 2, 2)))
@pytest.mark.parametrize("h, w", ((14, 13), (7, 7)))
def test_forward_c6_narrow_nonfinite(bad, where, pads, h, w):
    """A non-finite x at corners, edges and inside (the last 2 floats' lanes at ci 4, 5): y
    has NaN/inf exactly where the reference has; an inf weight (the planes run it) too."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, h, w, 6)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
    x[1, int(where[0] * (h - 1)), int(where[1] * (w - 1)), where[2]] = bad  # corners, inside
    args = ((2, 2), pads, (1, 1), 1)
    for weights in (wt, np.where(np.arange(wt.size).reshape(wt.shape) == 100, np.inf, wt)):
        weights = weights.astype(np.float32)
        y = _C.conv2d_forward(x, weights, None, *args)
        ref = R.conv2d_forward(x.astype(np.float64), weights.astype(np.float64), None, *args)
        assert np.array_equal(np.isnan(y), np.isnan(ref))
        assert np.array_equal(np.isposinf(y), np.isposinf(ref))
        assert np.array_equal(np.isneginf(y), np.isneginf(ref))
        fin = np.isfinite(ref)
        _close(np.where(fin, y, 0).astype(np.float32), np.where(fin, ref, 0))


# The C = 3 forward from the rows (few_channel_s2_patch_fwd3.cpp): blocks of 16 output
# columns, rows under 16 columns one masked block, 16 exact, over 16 the last block from the
# row's end (overlapping), the 33rd input pixel of a block (lane 15 of kx = 2) inside and
# outside the image; every pad, odd/even, batch 1-3, bias or not; the sweep's sizes at N = 1.
FWD3_SHAPES = ((1, 3, 2), (3, 7, 7), (2, 14, 14), (1, 8, 9), (2, 31, 32), (1, 33, 33),
               (3, 9, 35), (1, 5, 47), (2, 6, 64), (1, 1, 3), (1, 28, 28))


def _fwd3_case(n, h, w, pads, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, 3)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32) if bias else None
    args = ((2, 2), pads, (1, 1), 1)
    y = _C.conv2d_forward(x, wt, b, *args)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                           None if b is None else b.astype(np.float64), *args)
    _close(y, ref)


@pytest.mark.parametrize("n, h, w", FWD3_SHAPES)
@pytest.mark.parametrize("pads", list(itertools.product((0, 1, 2), (0, 1), (0, 1, 2), (0, 1))))
def test_forward_c3_rows(n, h, w, pads):
    if h + pads[0] + pads[1] < 3 or w + pads[2] + pads[3] < 3:
        pytest.skip("window larger than the padded input")
    _fwd3_case(n, h, w, pads, (h + w) % 2 == 1, n * 100 + h * w + sum(pads))


@pytest.mark.parametrize("n, hw", ((1, 56), (1, 112), (2, 57)))
def test_forward_c3_rows_sweep_sizes(n, hw):
    tot = max(0, (-(-hw // 2) - 1) * 2 + 3 - hw)
    _fwd3_case(n, hw, hw, (tot // 2, tot - tot // 2, tot // 2, tot - tot // 2), True, hw)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("where", ((0, 0, 0), (0, 1, 2), (1, 0, 1), (1, 1, 1), (0.5, 0.5, 0),
                                   (0.5, 32, 2), (0.5, 31, 1), (0.5, 33, 0)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (2, 2, 2, 2), (0, 0, 0, 0)))
@pytest.mark.parametrize("h, w", ((14, 13), (9, 41)))
def test_forward_c3_rows_nonfinite(bad, where, pads, h, w):
    """A non-finite x at corners, edges, inside and around a block's 33rd input column
    (columns 31-33: integer where[1] is a column): y has NaN/inf exactly where the reference
    has; an inf weight (the planes run it) too."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 3, 3)).astype(np.float32)
    col = where[1] if isinstance(where[1], int) and where[1] > 1 else int(where[1] * (w - 1))
    x[1, int(where[0] * (h - 1)), min(col, w - 1), where[2]] = bad
    args = ((2, 2), pads, (1, 1), 1)
    for weights in (wt, np.where(np.arange(wt.size).reshape(wt.shape) == 40, np.inf, wt)):
        weights = weights.astype(np.float32)
        y = _C.conv2d_forward(x, weights, None, *args)
        ref = R.conv2d_forward(x.astype(np.float64), weights.astype(np.float64), None, *args)
        assert np.array_equal(np.isnan(y), np.isnan(ref))
        assert np.array_equal(np.isposinf(y), np.isposinf(ref))
        assert np.array_equal(np.isneginf(y), np.isneginf(ref))
        fin = np.isfinite(ref)
        _close(np.where(fin, y, 0).astype(np.float32), np.where(fin, ref, 0))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("n, h, w, pads", ((700, 45, 45, (1, 1, 1, 1)), (200, 66, 120, (0, 1, 0, 1))))
def test_forward_c3_rows_big_x(n, h, w, pads):
    """x of 16 MiB or more: the one-row items with the prefetch (the rows' last item reaches
    past x's end), rows of 23 and 60 columns (the last block from the row's end), NaN and inf
    in the last image, ReLU at 2 threads deterministic."""
    assert n * h * w * 3 * 4 >= 16 << 20
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, h, w, 3)).astype(np.float32)
    x[n - 1, h - 1, w - 1, 2] = np.nan
    x[n - 1, h // 2, 17, 0] = np.inf
    wt = rng.standard_normal((3, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    args = ((2, 2), pads, (1, 1), 1)
    y = _C.conv2d_forward(x, wt, b, *args)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64),
                           *args)
    assert np.isnan(ref).any() and np.array_equal(np.isnan(y), np.isnan(ref))
    assert np.array_equal(np.isinf(y), np.isinf(ref))
    fin = np.isfinite(ref)
    _close(np.where(fin, y, 0).astype(np.float32), np.where(fin, ref, 0))
    saved = fc.get_num_threads()
    try:
        fc.set_num_threads(2)
        a, c = (_C.conv2d_forward(x, wt, b, *args, "relu") for _ in range(2))
        assert np.array_equal(a, c, equal_nan=True)
        assert np.array_equal(np.where(fin, a, 0), np.where(fin, np.maximum(y, 0), 0))
    finally:
        fc.set_num_threads(saved)
