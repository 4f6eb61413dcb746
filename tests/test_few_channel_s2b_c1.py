"""The 3x3 stride-2 forward with one channel in and out from the rows with in-lane shuffles
(csrc/cpu/few_channel_s2b_c1.cpp, the avx2 level: vshufps of plain / masked loads, the sums
in the lane order 0 1 4 5 2 3 6 7 put back by one vpermpd per output vector, the row's last
vector overlapping the one before). At the baseline and AVX-512 the same shapes run the
planes / AVX-512 rows kernel. Against the float64 reference: |got - ref| <= 1e-5 of the
largest |ref| (at least 1).

Widths 1..40 and 47..57 put the row's end at every lane of the loads (full loads need
base + 18 <= W), every pad set with 0..2 at the top / left, heights 1..7 (odd output row
counts: the item's second row absent), batch 1..3, bias or not, fused relu / relu6; the
sweep's shapes scaled down; two threads bit-equal to one; NaN / inf in x at corners, row ends
and inside, and in a weight: exactly the reference's NaN pattern (padding zeros multiplied
like the reference's)."""
import numpy as np
import pytest

from conv_oracle import close_abs, forward_s2, one_and_two_threads, ref_forward_s2, same_nonfinite

PADS = ((0, 1, 0, 1), (1, 1, 1, 1), (2, 2, 2, 0), (0, 0, 2, 2), (1, 0, 0, 1), (2, 1, 1, 0),
        (0, 0, 0, 0))


def _case(seed, n, h, w, pads, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32) if bias else None
    close_abs(forward_s2(x, wt, b, pads), ref_forward_s2(x, wt, b, pads))


@pytest.mark.parametrize("w", list(range(1, 41)) + list(range(47, 58)))
@pytest.mark.parametrize("pads", PADS)
def test_row_widths(w, pads):
    if w + pads[2] + pads[3] < 3:
        pytest.skip("window wider than the padded input")
    h = 3 + w % 5
    _case(w * 11 + sum(pads), 1 + w % 3, h, w, pads, bias=w % 2 == 0)


@pytest.mark.parametrize("h", range(1, 8))
@pytest.mark.parametrize("pads", PADS)
@pytest.mark.parametrize("w", (6, 17, 33))
def test_heights(h, pads, w):
    if h + pads[0] + pads[1] < 3:
        pytest.skip("window taller than the padded input")
    _case(h * 7 + w + sum(pads), 2, h, w, pads)


@pytest.mark.parametrize("n, hw", ((7, 7), (6, 14), (5, 28), (3, 56), (2, 112)))
def test_sweep_shapes(n, hw):
    total = max(0, (-(-hw // 2) - 1) * 2 + 3 - hw)
    _case(hw, n, hw, hw, (total // 2, total - total // 2, total // 2, total - total // 2))


@pytest.mark.parametrize("act", ("relu", "relu6"))
def test_fused_activation(act):
    rng = np.random.default_rng(5)
    x = (3 * rng.standard_normal((2, 29, 30, 1))).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    pads = (1, 1, 0, 1)
    ref = ref_forward_s2(x, wt, b, pads)
    ref = np.maximum(ref, 0) if act == "relu" else np.clip(ref, 0, 6)
    close_abs(forward_s2(x, wt, b, pads, act), ref)


def test_two_threads_bit_equal():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((160, 111, 112, 1)).astype(np.float32)  # enough work for 2 threads
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    pads = (1, 1, 0, 1)
    one, (two,), used = one_and_two_threads(lambda: forward_s2(x, wt, b, pads))
    assert used.count >= 2
    assert np.array_equal(one, two)
    close_abs(two, ref_forward_s2(x, wt, b, pads))


@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("hw, pads", ((7, (1, 1, 1, 1)), (56, (0, 1, 0, 1)), (19, (2, 2, 2, 0)),
                                      (34, (0, 0, 0, 0))))
def test_nonfinite_x(bad, hw, pads):
    rng = np.random.default_rng(hw)
    x = rng.standard_normal((2, hw, hw + 3, 1)).astype(np.float32)
    h, w = x.shape[1:3]
    for (n, i, j) in ((0, 0, 0), (0, 0, w - 1), (1, h - 1, 0), (1, h - 1, w - 1),
                      (0, h // 2, w // 2), (1, 1, w - 2), (0, h - 2, 17 % w)):
        x[n, i, j, 0] = bad
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    got, ref = forward_s2(x, wt, b, pads), ref_forward_s2(x, wt, b, pads)
    same_nonfinite(got, ref, close_abs)


@pytest.mark.parametrize("bad", (np.nan, np.inf))
@pytest.mark.parametrize("pads", ((0, 1, 0, 1), (1, 1, 1, 1), (2, 2, 2, 2)))
def test_nonfinite_weight(bad, pads):
    """An inf / NaN weight multiplies the padding's zeros like the reference (NaN at the
    border)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 20, 21, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    wt[0, 2, 0, 0] = bad
    same_nonfinite(forward_s2(x, wt, None, pads), ref_forward_s2(x, wt, None, pads), close_abs)
