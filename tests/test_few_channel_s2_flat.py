"""3x3 stride-2 forward with C = 3 and 6 channels in and out at the avx2 level, on the flat
NHWC rows' even and odd floats (csrc/cpu/few_channel_s2_flat_avx2.cpp; at AVX-512 these
shapes run few_channel_s2_patch_fwd*.cpp / the planes, at the baseline the planes), against
the float64 reference (test_direct_conv._close: rtol 1e-4, atol 1e-5 of the largest value).

Widths put a row's flat outputs (C*OW floats) at every place of the 24-float period and of
the 4-block steps (1..40 columns, 47..57), heights 1..6 (an item's last row: the stack copy,
the others' row-end overflow), all six pad sets (left pad 0..2), batch 1..3, bias or not;
the sweep's square 'same' shapes scaled down; two threads bit-equal run to run; a fused
relu; NaN / inf in x at corners, row ends and inside (an output row that reads one goes the
plain way): exactly the reference's pattern; an inf / NaN weight (the padding's zeros
multiplied by it, as the reference)."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import _C
from fastconv import reference as R

from test_direct_conv import _close
from threads_used import threads_used

PADS = ((0, 1, 0, 1), (1, 1, 1, 1), (2, 2, 2, 0), (0, 0, 2, 2), (1, 0, 0, 1), (2, 1, 1, 0))


def _fwd(x, wt, b, args, act=None):
    return _C.conv2d_forward(x, wt, b, *args) if act is None else \
        _C.conv2d_forward(x, wt, b, *args, act)


def _ref(x, wt, b, args):
    return R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                            None if b is None else b.astype(np.float64), *args)


def _case(seed, n, h, w, c, pads, bias=True):
    rng = np.random.default_rng(seed)
    args = ((2, 2), pads, (1, 1), 1)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    _close(_fwd(x, wt, b, args), _ref(x, wt, b, args))


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("w", list(range(1, 41)) + [47, 48, 49, 55, 56, 57])
@pytest.mark.parametrize("pads", PADS)
def test_row_widths(c, w, pads):
    if w + pads[2] + pads[3] < 3:
        pytest.skip("window wider than the padded input")
    h = 3 + w % 4
    _case(w * 13 + c + sum(pads), 1 + w % 3, h, w, c, pads, bias=w % 2 == 0)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("h", (1, 2, 3, 4, 5, 6))
@pytest.mark.parametrize("pads", PADS)
def test_heights(c, h, pads):
    if h + pads[0] + pads[1] < 3:
        pytest.skip("window taller than the padded input")
    _case(h * 7 + c + sum(pads), 2, h, 19, c, pads)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("n, hw", ((1, 7), (3, 14), (2, 28), (1, 56), (2, 112), (1, 111),
                                   (4, 7), (1, 13)))
def test_sweep_shapes_scaled_down(c, n, hw):
    tot = max(0, ((hw + 1) // 2 - 1) * 2 + 3 - hw)
    pads = (tot // 2, tot - tot // 2, tot // 2, tot - tot // 2)
    _case(n * 1000 + hw + c, n, hw, hw, c, pads)


@pytest.mark.parametrize("c", (3, 6))
def test_threaded_and_deterministic(c):
    rng = np.random.default_rng(15 + c)
    # over the 2M multiply-adds from which the pass runs on several threads; 3 images, so
    # the items are parts of images
    x = rng.standard_normal((3, 241, 243, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    saved = fc.get_num_threads()
    fc.set_num_threads(2)
    try:
        with threads_used() as used:
            runs = [_fwd(x, wt, b, args) for _ in range(2)]
    finally:
        fc.set_num_threads(saved)
    assert used.count == 2
    assert np.array_equal(runs[0], runs[1])
    _close(runs[0], _ref(x, wt, b, args))


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("w", (9, 16, 17, 40))
def test_fused_relu(c, w):
    rng = np.random.default_rng(w + c)
    x = rng.standard_normal((2, 11, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = np.full(c, 0.2, np.float32)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    ref = _ref(x, wt, b, args)
    assert (ref < 0).any()
    _close(_fwd(x, wt, b, args, "relu"), np.maximum(ref, 0.0))


def _same_nonfinite(got, ref):
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.array_equal(np.isposinf(got), np.isposinf(ref))
    assert np.array_equal(np.isneginf(got), np.isneginf(ref))
    fin = np.isfinite(ref)
    _close(np.where(fin, got, 0).astype(np.float32), np.where(fin, ref, 0))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("where", ((0, 0, 0), (0, 34, 2), (9, 8, 1), (4, 17, 0), (5, 16, 2),
                                   (9, 33, 1), (3, 1, 0)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (2, 0, 2, 0)))
def test_nonfinite_x(c, bad, where, pads):
    """A non-finite x value: in the vector path the zero-weight lanes would multiply it by 0
    for the neighbouring pixels; the plain rows give the reference's pattern exactly."""
    rng = np.random.default_rng(71 + c)
    args = ((2, 2), pads, (1, 1), 1)
    x = rng.standard_normal((2, 10, 35, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    x[1, where[0], where[1], where[2] % c] = bad
    ref = _ref(x, wt, b, args)
    reached = pads != (2, 0, 2, 0) or where[0] < 9
    assert np.isfinite(ref).all() != reached
    _same_nonfinite(_fwd(x, wt, b, args), ref)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
@pytest.mark.parametrize("tap", ((0, 2, 0, 1), (1, 1, 2, 0), (2, 0, 1, 2)))
def test_nonfinite_weight(c, bad, tap):
    """An inf/NaN weight multiplies the padding's zeros like the reference (NaN at the border)."""
    rng = np.random.default_rng(72 + c)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    x = rng.standard_normal((2, 9, 21, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    wt[tap] = bad
    _same_nonfinite(_fwd(x, wt, None, args), _ref(x, wt, None, args))
