"""Depthwise 3x3 forward as MobileNet's inference plan calls it (bias + relu6; stride 2 with the
fused ZeroPadding2D's pads (0, 1, 0, 1), stride 1 'same'), against the float64 oracle.

The tiles request the next output row ahead while a row runs (depthwise.cpp tiled_row3), up
to the last row of each thread's range: outputs from the output pool that earlier calls wrote
(kept alive, so each call takes an older block), rows split over two threads, odd and even
sizes, full and masked channel blocks, batch 1 and 3. Tolerances as in test_depthwise.py.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

PLAN = {2: ((2, 2), (0, 1, 0, 1)), 1: ((1, 1), (1, 1, 1, 1))}


def _ref(x, wt, b, stride):
    s, pads = PLAN[stride]
    z = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64),
                         s, pads, (1, 1), x.shape[3], "relu")
    return np.minimum(z, 6.0)


def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


def _run(x, wt, b, stride):
    s, pads = PLAN[stride]
    return _C.conv2d_forward(x, wt, b, s, pads, (1, 1), x.shape[3], "relu6")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("n, hw, c", [(1, 112, 32), (1, 28, 64), (1, 15, 48), (3, 14, 64), (1, 13, 512), (2, 9, 33)])
def test_depthwise_plan_forward_on_reused_outputs(threads, stride, n, hw, c):
    old = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        rng = np.random.default_rng(hw * 1000 + c)
        kept = []
        for _ in range(4):  # each call's output a pool block of an earlier call
            x = (2 * rng.standard_normal((n, hw, hw, c))).astype(np.float32)
            wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
            b = rng.standard_normal(c).astype(np.float32)
            y = _run(x, wt, b, stride)
            ref = _ref(x, wt, b, stride)
            _close(y, ref)
            assert (y == 6.0).any() and (y == 0.0).any()  # both ends of relu6 are reached
            kept.append(y)
        for y in kept[:-1]:  # the later calls wrote only their own blocks
            assert np.isfinite(y).all() and y.min() >= 0.0 and y.max() <= 6.0
    finally:
        _C.set_num_threads(old)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_plan_forward_nan_reaches_its_window(threads, stride):
    """A NaN in the input row read by the last output row of the first thread's range (and
    in the last channel: the masked block) reaches exactly the outputs whose window holds it."""
    old = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        rng = np.random.default_rng(5)
        n, hw, c = 1, 64, 48
        x = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
        wt = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        oh = hw // stride
        iy = (oh // 2 - 1) * stride + 1  # a row of output row oh/2 - 1's window
        x[0, iy, 7, c - 1] = np.nan
        y = _run(x, wt, b, stride)
        s, pads = PLAN[stride]
        hit = np.zeros(y.shape[1:3], bool)
        for oy in range(y.shape[1]):
            for ox in range(y.shape[2]):
                top, left = oy * stride - pads[0], ox * stride - pads[2]
                hit[oy, ox] = top <= iy < top + 3 and left <= 7 < left + 3
        nan = np.isnan(y)
        assert (nan[0, :, :, c - 1] == hit).all() and not nan[..., :c - 1].any()
        ref = _ref(x, wt, b, stride)
        _close(np.where(nan, 0, y), np.where(nan, 0, ref))
    finally:
        _C.set_num_threads(old)
