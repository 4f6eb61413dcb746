"""3x3 depthwise forward at stride 1 and 2 in register-width tiles (csrc/cpu/depthwise_reg_tiles.cpp:
the levels below AVX-512, inputs under 4 MiB (stride 1 at SSE: rows of 14 outputs or more); at AVX-512 and
for the other shapes the same calls take depthwise.cpp's paths, so this file checks whichever
runs), against the float64 reference.

Random shapes (odd and even sizes, batch 1 and 2, channels that fill no register, one, or
several with a masked tail), the pads MobileNet's fused ZeroPadding2D gives (0, 1, 0, 1),
'same' (1, 1, 1, 1), 'valid' and lopsided ones, every activation route (relu / relu6 in
registers, tanh on the row after, linear, no bias), one and two threads; NaN and inf reach
exactly the outputs whose window holds them. Tolerance: 1e-5 relative to the output's
magnitude (float32 sums of 9 products and a bias, FMA-contracted or not).
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R


def _ref(x, w, b, pads, act, stride=2):
    z = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                         None if b is None else b.astype(np.float64),
                         (stride, stride), pads, (1, 1), x.shape[3], "relu" if act == "relu6" else act)
    return np.minimum(z, 6.0) if act == "relu6" else z  # NaN stays NaN


def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


def _run(x, w, b, pads, act, stride=2):
    return _C.conv2d_forward(x, w, b, (stride, stride), pads, (1, 1), x.shape[3], act)


@pytest.fixture(params=[1, 2])
def threads(request):
    old = _C.get_num_threads()
    _C.set_num_threads(request.param)
    yield request.param
    _C.set_num_threads(old)


SHAPES = [(1, 112, 112, 64), (1, 56, 56, 128), (1, 28, 28, 256), (1, 14, 14, 512), (1, 7, 7, 1024),
          (1, 15, 15, 48), (2, 9, 11, 33), (1, 7, 7, 1), (1, 8, 13, 3), (1, 3, 3, 8), (2, 17, 6, 13),
          (1, 5, 20, 24), (3, 6, 5, 40), (1, 1, 1, 32), (1, 2, 9, 35)]
PADS = [(0, 1, 0, 1), (1, 1, 1, 1), (0, 0, 0, 0), (1, 0, 0, 1), (2, 2, 2, 2)]


@pytest.mark.parametrize("stride", [2, 1])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pads", PADS)
def test_forward_matches_reference(threads, stride, shape, pads):
    n, h, w_, c = shape
    if h + pads[0] + pads[1] < 3 or w_ + pads[2] + pads[3] < 3:
        pytest.skip("window larger than the padded input")
    rng = np.random.default_rng(h * 7919 + w_ * 31 + c + sum(pads))
    x = (2 * rng.standard_normal(shape)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    for act in ("relu6", "relu", "linear", "tanh"):
        _close(_run(x, w, b, pads, act, stride), _ref(x, w, b, pads, act, stride))
    _close(_run(x, w, None, pads, "linear", stride), _ref(x, w, None, pads, "linear", stride))


@pytest.mark.parametrize("stride, pads", [(2, (0, 1, 0, 1)), (1, (1, 1, 1, 1))])
@pytest.mark.parametrize("shape", [(1, 112, 112, 64), (1, 28, 28, 256), (1, 15, 15, 48), (2, 9, 11, 33)])
def test_forward_on_reused_outputs(threads, stride, pads, shape):
    """Outputs from the output pool that earlier calls wrote (kept alive): each call writes
    every element of its own block and nothing else."""
    rng = np.random.default_rng(shape[1] + shape[3])
    kept = []
    for _ in range(4):
        x = (2 * rng.standard_normal(shape)).astype(np.float32)
        w = rng.standard_normal((3, 3, 1, shape[3])).astype(np.float32)
        b = rng.standard_normal(shape[3]).astype(np.float32)
        y = _run(x, w, b, pads, "relu6", stride)
        _close(y, _ref(x, w, b, pads, "relu6", stride))
        assert (y == 6.0).any() and (y == 0.0).any()
        kept.append((y, y.copy()))
    for y, copy in kept:
        np.testing.assert_array_equal(y, copy)


@pytest.mark.parametrize("stride", [2, 1])
@pytest.mark.parametrize("pads", [(0, 1, 0, 1), (1, 1, 1, 1)])
@pytest.mark.parametrize("act", ["relu6", "relu", "linear"])
@pytest.mark.parametrize("where", [(0, 0), (6, 7), (12, 12), (13, 1), (5, 13)])
def test_forward_nan_and_inf_reach_their_windows(threads, stride, pads, act, where):
    """A NaN (last channel: the masked tail block) and an inf (first channel) reach exactly the
    outputs whose window holds them, through relu and relu6 too (NaN stays NaN)."""
    n, h, w_, c = 1, 14, 14, 13 if stride == 2 else 37
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, h, w_, c)).astype(np.float32)
    w = rng.uniform(0.5, 1.5, (3, 3, 1, c)).astype(np.float32)  # positive: inf stays +inf
    b = rng.standard_normal(c).astype(np.float32)
    iy, ix = where
    x[0, iy, ix, c - 1] = np.nan
    x[0, iy, ix, 0] = np.inf
    y = _run(x, w, b, pads, act, stride)
    hit = np.zeros(y.shape[1:3], bool)
    for oy in range(y.shape[1]):
        for ox in range(y.shape[2]):
            top, left = stride * oy - pads[0], stride * ox - pads[2]
            hit[oy, ox] = top <= iy < top + 3 and left <= ix < left + 3
    assert (np.isnan(y[0, :, :, c - 1]) == hit).all()
    assert not np.isnan(y[..., :c - 1]).any()
    big = np.isinf(y[0, :, :, 0])
    if act == "relu6":
        assert (y[0, :, :, 0][hit] == 6.0).all()
    else:
        assert (big == hit).all() and (y[0, :, :, 0][hit] > 0).all()
    finite = np.ones(y.shape, bool)
    finite[0, :, :, c - 1] = ~hit
    finite[0, :, :, 0] = ~hit
    x2 = x.copy()
    x2[0, iy, ix, [0, c - 1]] = 0.0
    ref = _ref(x2, w, b, pads, act, stride)
    _close(np.where(finite, y, 0), np.where(finite, ref, 0))


@pytest.mark.parametrize("stride", [2, 1])
def test_two_threads_equal_one(stride):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 56, 56, 128)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 128)).astype(np.float32)
    b = rng.standard_normal(128).astype(np.float32)
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(1)
        y1 = _run(x, w, b, (0, 1, 0, 1), "relu6", stride)
        _C.set_num_threads(2)
        y2 = _run(x, w, b, (0, 1, 0, 1), "relu6", stride)
    finally:
        _C.set_num_threads(old)
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("strides, dilation", [((3, 3), (1, 1)), ((2, 1), (1, 1)), ((1, 2), (1, 1)), ((1, 1), (2, 2)),
                                               ((2, 2), (1, 2))])
def test_other_geometries_keep_their_paths(strides, dilation):
    """Strides other than (1, 1) and (2, 2), and dilation, are not the tiles' (the gate): still
    the reference's values."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((1, 13, 12, 24)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 24)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    y = _C.conv2d_forward(x, w, b, strides, (1, 1, 1, 1), dilation, 24, "relu")
    ref = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), strides,
                           (1, 1, 1, 1), dilation, 24, "relu")
    _close(y, ref)
