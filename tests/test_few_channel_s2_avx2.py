"""3x3 stride-2 convs with few channels at the avx2 level. One channel in and out: straight
from the NHWC rows (csrc/cpu/few_channel_s2_c1_avx2.cpp, 8 outputs a ymm; at AVX-512 the same shapes run
few_channel_s2_c1.cpp, 16 a zmm, at the baseline the planes), all three passes, against the
float64 oracle (test_direct_conv._close: rtol 1e-4, atol 1e-5 of the largest value).

The widths put a vector's 17 input columns (two loads of 8 and the 17th, broadcast) just
inside, at and past the row's end at every left pad 0..2 (the whole-load and masked paths),
dy rows of 1..20 columns (the data pass's j - 1 loads and its two dx stores from column
2j - pl, the whole-register path from the second vector), odd and even output heights (a
last output row alone), batch 1..3, two threads bit-equal run to run, a fused relu, and NaN /
inf in x (forward, weight pass) and dy (data pass) at the columns where the 8-lane loads
split, landing exactly where the reference puts them. C = 3: the weight pass at 14..16
columns, on the row kernel below AVX-512 (few_channel_rows.cpp; the planes from 17 columns),
around that width rule."""
import itertools

import numpy as np
import pytest

import fastconv as fc
from fastconv import _C
from fastconv import reference as R

from conv_oracle import check_weight_pass, same_nonfinite
from test_direct_conv import _check, _close
from threads_used import threads_used

PADS = ((0, 1, 0, 1), (1, 1, 1, 1), (2, 2, 2, 0), (0, 0, 2, 2), (1, 0, 0, 1), (2, 1, 1, 0))


@pytest.mark.parametrize("w", list(range(1, 21)) + [23, 30, 31, 32, 33, 34, 35, 47, 49, 56, 57])
@pytest.mark.parametrize("h", (1, 2, 5, 6))
@pytest.mark.parametrize("pads", PADS)
def test_row_edges_all_passes(w, h, pads):
    if h + pads[0] + pads[1] < 3 or w + pads[2] + pads[3] < 3:
        pytest.skip("window larger than the padded input")
    _check(w * 10 + h + sum(pads), 1 + (w + h) % 3, h, w, 1, 1, (3, 3), (2, 2), pads, (1, 1),
           bias=(w + h) % 2 == 0)


@pytest.mark.parametrize("n, hw", ((1, 7), (3, 14), (2, 28), (1, 56), (2, 112), (1, 111)))
def test_sweep_shapes_scaled_down(n, hw):
    """The sweep's square 'same' shapes (pads (0, 1, 0, 1) at even sizes, (1, 1, 1, 1) at odd)."""
    tot = max(0, ((hw + 1) // 2 - 1) * 2 + 3 - hw)
    pads = (tot // 2, tot - tot // 2, tot // 2, tot - tot // 2)
    _check(n * 1000 + hw, n, hw, hw, 1, 1, (3, 3), (2, 2), pads, (1, 1))


def test_threaded_and_deterministic():
    rng = np.random.default_rng(15)
    # over the 2M multiply-adds from which the passes run on several threads
    x = rng.standard_normal((63, 181, 183, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    dy = rng.standard_normal((63, 91, 92, 1)).astype(np.float32)
    saved = fc.get_num_threads()
    fc.set_num_threads(2)
    try:
        with threads_used() as used:
            runs = [(_C.conv2d_forward(x, wt, b, *args),
                     _C.conv2d_backward_data(dy, wt, x.shape, *args),
                     _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)) for _ in range(2)]
    finally:
        fc.set_num_threads(saved)
    assert used.count == 2
    (y, dx, (dw, db)), (y2, dx2, (dw2, db2)) = runs
    for a, c in ((y, y2), (dx, dx2), (dw, dw2), (db, db2)):
        assert np.array_equal(a, c)
    x64, w64, dy64 = x.astype(np.float64), wt.astype(np.float64), dy.astype(np.float64)
    _close(y, R.conv2d_forward(x64, w64, b.astype(np.float64), *args))
    _close(dx, R.conv2d_backward_data(dy64, w64, x.shape, *args))
    rdw, rdb = R.conv2d_backward_weights(dy64, x64, wt.shape, *args, True)
    _close(dw, rdw)
    _close(db, rdb)


def test_weight_pass_flushes():
    """Over 65536 output pixels a thread (the float lanes flushed into doubles mid-pass)."""
    rng = np.random.default_rng(16)
    x = rng.standard_normal((5, 250, 251, 1)).astype(np.float32)
    dy = rng.standard_normal((5, 125, 126, 1)).astype(np.float32)
    args = ((2, 2), (0, 1, 1, 1), (1, 1), 1)
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, 1, 1), *args, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, 1, 1), *args, True)
    _close(dw, rdw)
    _close(db, rdb)


@pytest.mark.parametrize("w", (9, 16, 17, 40))
def test_fused_relu(w):
    rng = np.random.default_rng(w)
    x = rng.standard_normal((2, 11, w, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = np.array([0.2], np.float32)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    y = _C.conv2d_forward(x, wt, b, *args, "relu")
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    assert (ref < 0).any()
    _close(y, np.maximum(ref, 0.0))


# the float64 reference itself computes 0 * inf (NaN, as it should): numpy warns about it
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("where", ((0, 0), (0, 15), (0, 16), (0, 17), (9, 8), (4, 31),
                                   (5, 32), (9, 33), (3, 34)))
@pytest.mark.parametrize("pads", ((1, 1, 1, 1), (0, 1, 0, 1), (2, 0, 2, 0)))
def test_nonfinite_at_vector_edges(bad, where, pads):
    """A non-finite x value at a corner, at the columns where the 8-lane loads split (16: the
    second register's first lane, 17: the broadcast column, 32..34: the next vector), on the
    top and bottom rows: the reference's NaN/inf pattern exactly in y and dw; a non-finite dy
    value at the matching place (dy columns 7, 8: a vector's last / first lane and the next
    vector's j - 1 load) in dx."""
    rng = np.random.default_rng(71)
    args = ((2, 2), pads, (1, 1), 1)
    x = rng.standard_normal((2, 10, 35, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    x[1, where[0], where[1], 0] = bad
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    ref = R.conv2d_forward(x64, w64, b.astype(np.float64), *args)
    # with pads (2, 0, 2, 0) the last row of x (row 9) is in no window
    reached = pads != (2, 0, 2, 0) or where[0] < 9
    assert np.isfinite(ref).all() != reached
    same_nonfinite(_C.conv2d_forward(x, wt, b, *args), ref)
    dy = rng.standard_normal(ref.shape).astype(np.float32)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, True)
    assert np.isfinite(rdw).all() != reached
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    same_nonfinite(dw, rdw)
    _close(db, rdb)
    dy[1, min(where[0] // 2, dy.shape[1] - 1), min(where[1] // 2, dy.shape[2] - 1), 0] = bad
    rdx = R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args)
    assert not np.isfinite(rdx).all()
    same_nonfinite(_C.conv2d_backward_data(dy, wt, x.shape, *args), rdx)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_nonfinite_weight(bad):
    """An inf/NaN weight: the forward multiplies the padding's zeros by it like the reference
    (NaN on the border outputs); the data pass leaves such a w to the planes' fallback."""
    rng = np.random.default_rng(72)
    args = ((2, 2), (1, 1, 1, 1), (1, 1), 1)
    x = rng.standard_normal((2, 9, 21, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    wt[0, 2, 0, 0] = bad
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *args)
    same_nonfinite(_C.conv2d_forward(x, wt, None, *args), ref)
    dy = rng.standard_normal(ref.shape).astype(np.float32)
    rdx = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, *args)
    same_nonfinite(_C.conv2d_backward_data(dy, wt, x.shape, *args), rdx)


@pytest.mark.parametrize("w", (13, 14, 15, 16, 17, 18, 21))
@pytest.mark.parametrize("pads", ((0, 1, 0, 1), (1, 1, 1, 1), (2, 0, 1, 1)))
@pytest.mark.parametrize("n", (1, 3))
def test_c3_weight_pass_width_rule(w, pads, n):
    rng = np.random.default_rng(w * 7 + n + sum(pads))
    args = ((2, 2), pads, (1, 1), 1)
    h = w + 1 - n % 2
    x = rng.standard_normal((n, h, w, 3)).astype(np.float32)
    oh = (h + pads[0] + pads[1] - 3) // 2 + 1
    ow = (w + pads[2] + pads[3] - 3) // 2 + 1
    dy = rng.standard_normal((n, oh, ow, 3)).astype(np.float32)
    check_weight_pass(dy, x, (3, 3, 3, 3), args)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", (np.nan, np.inf))
@pytest.mark.parametrize("where", ((0, 0), (0, 15), (7, 8), (14, 14)))
def test_c3_weight_pass_nonfinite(bad, where):
    rng = np.random.default_rng(73)
    args = ((2, 2), (0, 1, 0, 1), (1, 1), 1)
    x = rng.standard_normal((2, 16, 16, 3)).astype(np.float32)
    x[1, where[0], where[1], 1] = bad
    dy = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    dw, db = _C.conv2d_backward_weights(dy, x, (3, 3, 3, 3), *args, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         (3, 3, 3, 3), *args, True)
    assert not np.isfinite(rdw).all()
    same_nonfinite(dw, rdw)
    _close(db, rdb)
