"""The column-phase pack of 3x3 stride-2 convs at the avx2 level (csrc/cpu/few_channel_s2.h's
split_pairs: Split3, two blends and a vpermps per register for C = 3, and phase_of, the
even / odd columns by vshufps + vpermpd) under every pass that packs with it: the planes'
C = 3 and 6 forward and C = 3 weight pass (few_channel_s2_planes.cpp, _weights.cpp) and the
direct path's stride-2 row packs (direct_conv.cpp's split_pairs_any, C = 1..8). At AVX-512
the same shapes run the AVX-512 kernels, at the baseline the generic shuffles. Against the
float64 reference (test_direct_conv._close: rtol 1e-4, atol 1e-5 of the largest value).

Widths put a row's pairs at every place of the 8-pair registers (1..40 columns, 47..57),
heights 1..6, all six pad sets (left pad 0..2), batch 1..3, bias or not; the sweep's square
'same' shapes scaled down; two threads bit-equal run to run; a fused relu; NaN / inf in x at
corners, row ends and inside: exactly the reference's pattern; an inf / NaN weight."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import _C
from fastconv import reference as R

from conv_oracle import check_weight_pass, same_nonfinite
from test_direct_conv import _check, _close
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
    same_nonfinite(_fwd(x, wt, b, args), ref)


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
    same_nonfinite(_fwd(x, wt, None, args), _ref(x, wt, None, args))


@pytest.mark.parametrize("w", (17, 18, 19, 23, 24, 31, 32, 33, 47, 56, 57))
@pytest.mark.parametrize("pads", ((0, 1, 0, 1), (1, 1, 1, 1), (2, 0, 1, 1), (0, 2, 2, 0)))
@pytest.mark.parametrize("n", (1, 3))
def test_c3_weight_pass(w, pads, n):
    """The C = 3 weight pass on the planes (from 17 columns below AVX-512)."""
    rng = np.random.default_rng(w * 5 + n + sum(pads))
    args = ((2, 2), pads, (1, 1), 1)
    h = w - 2 + n % 2
    x = rng.standard_normal((n, h, w, 3)).astype(np.float32)
    oh = (h + pads[0] + pads[1] - 3) // 2 + 1
    ow = (w + pads[2] + pads[3] - 3) // 2 + 1
    dy = rng.standard_normal((n, oh, ow, 3)).astype(np.float32)
    check_weight_pass(dy, x, (3, 3, 3, 3), args)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf))
@pytest.mark.parametrize("where", ((0, 0), (0, 15), (7, 16), (14, 33), (20, 34)))
def test_c3_weight_pass_nonfinite(bad, where):
    rng = np.random.default_rng(74)
    args = ((2, 2), (0, 1, 0, 1), (1, 1), 1)
    x = rng.standard_normal((2, 22, 36, 3)).astype(np.float32)
    x[1, where[0], where[1], 2] = bad
    dy = rng.standard_normal((2, 11, 18, 3)).astype(np.float32)
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, 3, 3), *args, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, 3, 3), *args, True)
    assert not np.isfinite(rdw).all()
    same_nonfinite(dw, rdw)
    _close(db, rdb)


@pytest.mark.parametrize("cin, cout", ((2, 5), (3, 8), (5, 4), (7, 3), (8, 8), (3, 16)))
@pytest.mark.parametrize("w", (15, 16, 17, 33, 40))
def test_direct_path_stride2_packs(cin, cout, w):
    """Stride-2 convs the direct path packs with split_pairs_any (all three passes)."""
    _check(cin * 100 + cout + w, 2, 11, w, cin, cout, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1))
