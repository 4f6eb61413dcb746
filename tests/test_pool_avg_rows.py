"""Average pooling over tiling windows at few channels, the avx2 level's row kernels.

Forward: 2x2 stride-2 average pool at C = 3 (csrc/cpu/pool_avg_c3.cpp at the avx2 level:
8 outputs per step from shifted unaligned loads, the row's last group overlapping the one
before, the tensor's last group scalar; below 8 outputs a row pool_rows8.cpp's permutes; at
avx512 and baseline their own paths). Run at every level (FASTCONV_ISA); the expectations
are the same.

Every level sums a window's cells in row-major order from +0 in float32 and multiplies by
1/4, so the result must equal that sum emulated in NumPy float32 bit for bit (NaN where the
window holds one, or +inf and -inf; +0 for a window of -0s); and the float64 oracle to rtol
1e-6. Shapes: the sweep's (256, 56, 56, 3) and (32, 112, 112, 3) scaled down, widths with 8,
9, 15, 16, 17 and 28 outputs a row (a last group overlapping the one before, or none), odd
heights and widths (a last row / column in no window), batch 1, the tensor's last group.

Backward (pool_rows8.cpp backward_rows8 at C = 1, 2, 4 with kw == 2: the rows after a
window row block's first are copies of it): dx = +0 + (dy * (1 / (kh * kw)), rounded) in the
window's cells and 0 in rows / columns in no window, bit for bit against that emulation, NaN
and -0 included; windows of 2x2, 3x2 (two copies), 1x2 (none), 4x2, at C = 1, 2, 3, 4, 6.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import functional as F
from fastconv import reference as R
from fastconv.functional.pool import _pool_args

import seeds

SHAPES = [(2, 56, 56, 3), (1, 112, 112, 3), (3, 28, 28, 3), (1, 16, 16, 3), (2, 17, 17, 3),
          (1, 18, 18, 3), (2, 5, 31, 3), (1, 2, 32, 3), (1, 3, 34, 3), (3, 7, 35, 3), (1, 2, 16, 3),
          (4, 9, 57, 3), (1, 14, 14, 3), (2, 6, 15, 3), (1, 3, 20, 3)]


def _rng(*parts):
    return np.random.default_rng(seeds.seed_of("pool_avg_c3", *parts))


def _emulated(x):
    """((((+0 + x00) + x01) + x10) + x11) * 0.25 in float32, windows in row-major order."""
    n, h, w, c = x.shape
    oh, ow = h // 2, w // 2
    v = x[:, : 2 * oh, : 2 * ow].reshape(n, oh, 2, ow, 2, c)
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.float32(0) + v[:, :, 0, :, 0]
        s = s + v[:, :, 0, :, 1]
        s = s + v[:, :, 1, :, 0]
        s = s + v[:, :, 1, :, 1]
        return (s * np.float32(0.25)).astype(np.float32)


def _pool(x):
    return _C.avg_pool2d_forward(x, *_pool_args(x.shape, 2, None, "valid"))


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_emulation_and_oracle(shape):
    x = (3 * _rng("shape", shape).standard_normal(shape) + 1).astype(np.float32)
    y = _pool(x)
    assert y.shape == (shape[0], shape[1] // 2, shape[2] // 2, 3)
    np.testing.assert_array_equal(y, _emulated(x))
    ref = R.avg_pool2d_forward(x.astype(np.float64), (2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    # the functional call (Keras-like args) takes the same route
    np.testing.assert_array_equal(F.avg_pool2d(x, 2), y)


@pytest.mark.parametrize("shape", [(1, 4, 34, 3), (2, 6, 16, 3), (1, 5, 17, 3)])
def test_nan_inf_and_signed_zero_in_every_lane(shape):
    """A NaN, an inf and -inf pair, and all-(-0) windows at every output position of a row
    (each half register and the overlapping last group), against the emulation bit for bit."""
    rng = _rng("special", shape)
    n, h, w, c = shape
    for pos in range(w):
        x = rng.standard_normal(shape).astype(np.float32)
        x[0, 0, pos, pos % 3] = np.nan
        x[-1, 2 * (h // 2) - 1, pos, (pos + 1) % 3] = np.inf
        x[-1, 2 * (h // 2) - 2, pos - 1 if pos % 2 else pos + 1 if pos + 1 < w else pos, (pos + 1) % 3] = -np.inf
        ox = pos // 2
        if 2 * ox + 1 < w:
            x[0, 2:4, 2 * ox : 2 * ox + 2, (pos + 2) % 3] = -0.0
        y = _pool(x)
        e = _emulated(x)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(e))
        np.testing.assert_array_equal(np.signbit(y[~np.isnan(y)]), np.signbit(e[~np.isnan(e)]))
        np.testing.assert_array_equal(y, e)


def test_large_magnitudes_round_as_float32_sums():
    x = (_rng("big").standard_normal((2, 8, 40, 3)) * np.float32(1e30)).astype(np.float32)
    x[0, 0, :, 0] = 3e38  # overflows to inf in float32 as the emulation does
    np.testing.assert_array_equal(_pool(x), _emulated(x))


def _emulated_backward(dy, x_shape, kh, kw):
    n, h, w, c = x_shape
    oh, ow = dy.shape[1], dy.shape[2]
    term = (dy * np.float32(1.0 / (kh * kw))).astype(np.float32)
    with np.errstate(invalid="ignore"):
        cells = np.float32(0) + term
    dx = np.zeros(x_shape, np.float32)
    dx[:, : oh * kh, : ow * kw] = np.repeat(np.repeat(cells, kh, axis=1), kw, axis=2)
    return dx


BACKWARD = [(2, 28, 28, 1, (2, 2)), (1, 56, 56, 1, (2, 2)), (3, 28, 28, 2, (2, 2)), (2, 28, 28, 4, (2, 2)),
            (2, 9, 11, 1, (2, 2)), (1, 13, 17, 2, (2, 2)), (2, 7, 9, 4, (2, 2)), (2, 9, 20, 1, (3, 2)),
            (1, 10, 18, 2, (3, 2)), (2, 5, 22, 1, (1, 2)), (1, 9, 16, 4, (4, 2)), (1, 2, 2, 1, (2, 2)),
            (2, 8, 6, 1, (2, 2)), (3, 14, 14, 3, (2, 2)), (2, 11, 13, 6, (2, 2)), (1, 12, 34, 1, (2, 2))]


@pytest.mark.parametrize("n,h,w,c,pool", BACKWARD)
def test_backward_matches_emulation(n, h, w, c, pool):
    rng = _rng("backward", n, h, w, c, pool)
    x_shape = (n, h, w, c)
    args = _pool_args(x_shape, pool, None, "valid")
    oh, ow = h // pool[0], w // pool[1]
    dy = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
    dy.flat[:: 7] = -0.0
    dy.flat[min(3, dy.size - 1)] = np.nan
    dx = _C.avg_pool2d_backward(dy, x_shape, *args)
    e = _emulated_backward(dy, x_shape, *pool)
    np.testing.assert_array_equal(np.signbit(dx[~np.isnan(dx)]), np.signbit(e[~np.isnan(e)]))
    np.testing.assert_array_equal(dx, e)
    ref = R.avg_pool2d_backward(np.nan_to_num(dy).astype(np.float64), x_shape, pool, pool, (0, 0, 0, 0))
    got = _C.avg_pool2d_backward(np.nan_to_num(dy), x_shape, *args)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
