"""The backward data pass of 3x3 stride-2 convs with C = 3 and 6 channels in and out along the
flat NHWC dx rows (csrc/cpu/few_channel_s2b_data.cpp, the avx2 level; 'same'-like padding:
pads 0..1 at the top and left, dy's grid the plane grid). At the baseline and AVX-512 the
same shapes run the planes / direct path; the other pads hand back to them at every level.
Against the float64 reference: |got - ref| <= 1e-5 of the largest |ref| (at least 1).

Widths 1..40 and 47..57 put a dx row's last vector at every fill (rows of 3 to 171 floats,
the 24-float period's three phases), heights 1..8, both left and top pads, batch 1..3; the
sweep's square shapes scaled down, and some at full size; one image on two threads (column
ranges of it) against one thread, bit-equal; NaN / inf in dy at corners, row ends and
inside: exactly the reference's NaN pattern (the B taps of odd columns and column -1 are
cleared by masks, never multiplied by a zero weight); an inf / NaN weight (handed back:
the reference's pattern exactly)."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

from conv_oracle import close_abs, one_and_two_threads, same_nonfinite


def _pads(h, w, pt, pl):
    """'same'-like pads: the plane grid is dy's grid, bottom / right what the window needs."""
    oh, ow = (pt + h - 1) // 2 + 1, (pl + w - 1) // 2 + 1
    return (pt, (oh - 1) * 2 + 3 - h - pt, pl, (ow - 1) * 2 + 3 - w - pl)


def _data(dy, wt, x_shape, pads):
    return _C.conv2d_backward_data(dy, wt, x_shape, (2, 2), pads, (1, 1), 1)


def _ref(dy, wt, x_shape, pads):
    return R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, (2, 2),
                                  pads, (1, 1), 1)


def _dy_shape(x_shape, pads):
    n, h, w, c = x_shape
    return (n, (h + pads[0] + pads[1] - 3) // 2 + 1, (w + pads[2] + pads[3] - 3) // 2 + 1, c)


def _case(seed, x_shape, pads):
    rng = np.random.default_rng(seed)
    c = x_shape[3]
    dy = rng.standard_normal(_dy_shape(x_shape, pads)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    close_abs(_data(dy, wt, x_shape, pads), _ref(dy, wt, x_shape, pads))


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("w", list(range(1, 41)) + list(range(47, 58)))
@pytest.mark.parametrize("pl", (0, 1))
def test_row_widths(c, w, pl):
    h = 2 + w % 5
    _case(w * 7 + c + pl, (1 + w % 3, h, w, c), _pads(h, w, (w // 2) % 2, pl))


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("h", range(1, 9))
@pytest.mark.parametrize("pt", (0, 1))
@pytest.mark.parametrize("w", (5, 8, 11, 16))
def test_heights(c, h, pt, w):
    _case(h * 31 + w + c + pt, (2, h, w, c), _pads(h, w, pt, w % 2))


# The sweep's square 'same' shapes (bench_sweep.py), batch scaled down.
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("n, hw", ((5, 7), (4, 14), (3, 28), (2, 56), (1, 112)))
def test_sweep_shapes(c, n, hw):
    total = max(0, (-(-hw // 2) - 1) * 2 + 3 - hw)
    pads = (total // 2, total - total // 2, total // 2, total - total // 2)
    _case(hw + c, (n, hw, hw, c), pads)


@pytest.mark.parametrize("pads", ((0, 0, 0, 0), (2, 2, 2, 2), (1, 0, 2, 1), (0, 2, 0, 2)))
@pytest.mark.parametrize("c", (3, 6))
def test_other_pads_hand_back(c, pads):
    """Pads outside the 'same'-like set (valid, 2 at the top or left, one more row of dy than
    the planes need) run the other paths: still the reference."""
    _case(sum(pads) + c, (2, 9, 10, c), pads)


@pytest.mark.parametrize("c, hw", ((3, 331), (6, 20)))
def test_one_image_two_threads(c, hw):
    """One image with enough work for two threads (C = 3 at 331 x 330: 166 x 165 dy pixels)
    takes column ranges of it (no whole-vector spill over row ends there): bit-equal to one
    thread and to the reference. C = 6 runs here only up to 26 columns: one thread."""
    rng = np.random.default_rng(c)
    x_shape = (1, hw, hw - 1, c)
    pads = _pads(hw, hw - 1, 1, 0)
    dy = rng.standard_normal(_dy_shape(x_shape, pads)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    one, (two, again), used = one_and_two_threads(lambda: _data(dy, wt, x_shape, pads), 2)
    if c == 3:
        assert used.count >= 2
    assert np.array_equal(one, two)
    assert np.array_equal(two, again)
    close_abs(two, _ref(dy, wt, x_shape, pads))


@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("hw, pt, pl", ((7, 1, 1), (14, 0, 0), (13, 0, 1), (16, 1, 0)))
def test_nonfinite_dy(bad, c, hw, pt, pl):
    """NaN / inf in dy at the corners, row ends and inside reach exactly the reference's dx
    pixels (the masked lanes never multiply them)."""
    rng = np.random.default_rng(hw + c)
    x_shape = (2, hw, hw + 1, c)
    pads = _pads(hw, hw + 1, pt, pl)
    dy = rng.standard_normal(_dy_shape(x_shape, pads)).astype(np.float32)
    oh, ow = dy.shape[1:3]
    for (n, i, j, k) in ((0, 0, 0, 0), (0, 0, ow - 1, c - 1), (1, oh - 1, 0, 1),
                         (1, oh - 1, ow - 1, 2), (0, oh // 2, ow // 2, c - 1), (1, 1, ow - 1, 0)):
        dy[n, i, j, k] = bad
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    same_nonfinite(_data(dy, wt, x_shape, pads), _ref(dy, wt, x_shape, pads), close_abs)


@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("c", (3, 6))
def test_nonfinite_weight(bad, c):
    """A non-finite weight hands the pass back to the im2col GEMM (conv2d.cpp), whose dcol
    holds only dy's own pixels times w: exactly the reference's NaN / inf pattern (the
    direct and planes routes multiplied dy's zero padding by it, NaN on border pixels that
    the reference leaves finite; tests/test_nonfinite_weight_routes.py scans the others)."""
    rng = np.random.default_rng(c)
    x_shape = (2, 14, 14, c)
    pads = _pads(14, 14, 0, 0)
    dy = rng.standard_normal(_dy_shape(x_shape, pads)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    wt[1, 2, 0, c - 1] = bad
    got, ref = _data(dy, wt, x_shape, pads), _ref(dy, wt, x_shape, pads)
    assert np.isfinite(ref).sum() > ref.size // 2
    same_nonfinite(got, ref, close_abs)
