"""The forward of 3x3 stride-2 convs with C = 3 and 6 channels in and out along the flat NHWC
output rows (csrc/cpu/few_channel_s2b_fwd.cpp, the avx2 level, up to 10 input columns: the
image split to planar rows with zero columns, one vpermps of a window per input row, channel
and tap, input row 2*oy + 2 - pt carried to the next output row). At the baseline and
AVX-512, and from 11 columns, the same shapes run the planes. Against the float64 reference:
|got - ref| <= 1e-5 of the largest |ref| (at least 1).

Widths 1..16 (the row's last vector at every fill, the split's masked tail at every length)
and a few wider ones, every pad set with 0..2 at the top / left, heights 1..9 (rows outside x
skipped at both ends), batch 1..3, bias or not, fused relu / relu6; the sweep's small shapes
with their batch scaled down and at full batch; one image on two threads; NaN / inf in x at
corners, row ends and inside: exactly the reference's NaN / inf pattern; a NaN / inf weight
(handed back to the planes)."""
import numpy as np
import pytest

from conv_oracle import close_abs, forward_s2, one_and_two_threads, ref_forward_s2, same_nonfinite

PADS = ((0, 1, 0, 1), (1, 1, 1, 1), (2, 2, 2, 0), (0, 0, 2, 2), (1, 0, 0, 1), (2, 1, 1, 0),
        (0, 0, 0, 0), (1, 2, 2, 1))


def _case(seed, n, h, w, c, pads, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    close_abs(forward_s2(x, wt, b, pads), ref_forward_s2(x, wt, b, pads))


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("w", list(range(1, 17)) + [20, 29])
@pytest.mark.parametrize("pads", PADS)
def test_row_widths(c, w, pads):
    if w + pads[2] + pads[3] < 3:
        pytest.skip("window wider than the padded input")
    h = 3 + w % 5
    _case(w * 11 + c + sum(pads), 1 + w % 3, h, w, c, pads, bias=w % 2 == 0)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("h", range(1, 10))
@pytest.mark.parametrize("pads", PADS)
@pytest.mark.parametrize("w", (4, 7, 10))
def test_heights(c, h, pads, w):
    if h + pads[0] + pads[1] < 3:
        pytest.skip("window taller than the padded input")
    _case(h * 7 + w + c + sum(pads), 2, h, w, c, pads)


@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("n, hw", ((256, 7), (32, 7), (5, 7), (3, 9), (7, 10), (2, 14)))
def test_sweep_shapes(c, n, hw):
    total = max(0, (-(-hw // 2) - 1) * 2 + 3 - hw)
    _case(hw + n + c, n, hw, hw, c, (total // 2, total - total // 2, total // 2, total - total // 2))


@pytest.mark.parametrize("act", ("relu", "relu6"))
@pytest.mark.parametrize("c", (3, 6))
def test_fused_activation(act, c):
    rng = np.random.default_rng(5)
    x = (3 * rng.standard_normal((3, 9, 10, c))).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    pads = (1, 1, 0, 1)
    ref = ref_forward_s2(x, wt, b, pads)
    ref = np.maximum(ref, 0) if act == "relu" else np.clip(ref, 0, 6)
    close_abs(forward_s2(x, wt, b, pads, act), ref)


@pytest.mark.parametrize("c", (3, 6))
def test_threads_bit_equal(c):
    """Batches on two threads take whole images: bit-equal to one thread."""
    rng = np.random.default_rng(c)
    x = rng.standard_normal((1100, 9, 10, c)).astype(np.float32)  # enough work for 2 threads
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    pads = (1, 1, 0, 1)
    one, (two,), used = one_and_two_threads(lambda: forward_s2(x, wt, b, pads))
    assert used.count >= 2
    assert np.array_equal(one, two)
    close_abs(two, ref_forward_s2(x, wt, b, pads))


@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("hw, pads", ((7, (1, 1, 1, 1)), (8, (0, 1, 0, 1)), (9, (2, 2, 2, 0)),
                                      (10, (0, 0, 0, 0))))
def test_nonfinite_x(bad, c, hw, pads):
    rng = np.random.default_rng(hw + c)
    x = rng.standard_normal((2, hw, hw, c)).astype(np.float32)
    h, w = x.shape[1:3]
    for (n, i, j, k) in ((0, 0, 0, 0), (0, 0, w - 1, c - 1), (1, h - 1, 0, 1), (1, h - 1, w - 1, 2),
                         (0, h // 2, w // 2, c - 1), (1, 1, w - 2, 0)):
        x[n, i, j, k] = bad
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    got, ref = forward_s2(x, wt, b, pads), ref_forward_s2(x, wt, b, pads)
    same_nonfinite(got, ref, close_abs)


@pytest.mark.parametrize("bad", (np.nan, np.inf))
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("pads", ((0, 1, 0, 1), (1, 1, 1, 1), (2, 2, 2, 2)))
def test_nonfinite_weight(bad, c, pads):
    """A non-finite weight hands the pass back to the planes, which multiply the padding's
    zeros like the reference (NaN at the border)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 9, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    wt[0, 2, 1, c - 1] = bad
    same_nonfinite(forward_s2(x, wt, None, pads), ref_forward_s2(x, wt, None, pads), close_abs)
