"""Pooling over tiling windows (pool == strides, no padding) at few channels (C < 8): at the
avx2 level csrc/cpu/pool_rows8.cpp (forwards: two row loads and per-cell permutes instead of a
gather per cell; backwards with kw == 2 at C = 1, 2, 3, 4, 6: constant patterns in registers),
at avx512 pool_tiling.cpp's forward_rows16 and flat backward, at the baseline the general
paths. Run at every level (FASTCONV_ISA); the expectations are the same.

Backward: max's dx is a selection of dy (exactly the oracle's, NaN gradients included, zero
outside the winner and in rows / columns in no window); average's dy * (1 / (kh*kw)) against
the float64 oracle, rtol 1e-6.

Max and its argmax are selections, so they must equal the oracle's exactly: NaN pools to NaN
and the last NaN cell wins, ties (and -0.0 against +0.0) keep the first cell in row-major
order. The average sums the window in row-major order from +0 in float32: against the float64
oracle rtol 1e-6 (the float32 rounding of at most 16 additions), NaN exactly where the window
holds one (or +inf and -inf), the sign of a zero sum +0.

Shapes: the sweep's 2x2 cases scaled down (56x56 and 28x28 with C = 1, 3, 6), odd sizes (a
last row and column in no window), widths whose last group holds fewer outputs than a vector,
batch 1, windows of 1x2, 2x1, 3x3, 2x4, 1x8, 1x16 up to kw*C = 16, and the tensor's very last
group (no read past x).
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

import seeds

PADS = (0, 0, 0, 0)

# (N, H, W, C, pool): pool == strides
CASES = [
    (4, 56, 56, 3, (2, 2)),
    (2, 56, 56, 1, (2, 2)),
    (3, 28, 28, 6, (2, 2)),
    (5, 28, 28, 3, (2, 2)),
    (1, 28, 28, 1, (2, 2)),
    (1, 112, 112, 3, (2, 2)),
    (2, 9, 11, 1, (2, 2)),
    (2, 9, 11, 2, (2, 2)),
    (2, 9, 11, 3, (2, 2)),
    (2, 9, 11, 4, (2, 2)),
    (2, 9, 11, 5, (2, 2)),
    (2, 9, 11, 7, (2, 2)),
    (1, 13, 13, 3, (2, 2)),
    (3, 7, 7, 6, (2, 2)),
    (2, 6, 18, 1, (2, 2)),   # 9 outputs a row: a full vector of 8, then 1
    (2, 6, 34, 2, (2, 2)),   # 17 outputs: 4 + 4 + ... + 1
    (2, 5, 13, 3, (1, 2)),
    (2, 8, 9, 3, (2, 1)),
    (2, 10, 23, 5, (3, 3)),
    (2, 11, 10, 1, (3, 3)),
    (2, 8, 9, 2, (2, 4)),
    (2, 3, 37, 2, (1, 8)),   # kw*C = 16
    (2, 3, 35, 1, (1, 16)),  # kw = 16 at C = 1
    (2, 4, 4, 7, (1, 1)),
    (1, 1, 1, 3, (1, 1)),
    (1, 2, 2, 1, (2, 2)),    # one output: the tensor's last group is its first
]


def _input(rng, shape, kind):
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "nan":
        x[rng.random(shape) < 0.05] = np.nan
        x[rng.random(shape) < 0.02] = -np.inf
        x[rng.random(shape) < 0.02] = np.inf
    if kind == "zeros":  # signed zeros only: ties of +0 and -0
        x = np.where(rng.random(shape) < 0.5, np.float32(0.0), np.float32(-0.0)).astype(np.float32)
    return x


def _check(x, pool):
    y, arg = _C.max_pool2d_forward_with_argmax(x, pool, pool, PADS)
    ref_y, ref_arg = R.max_pool2d_forward_with_argmax(x, pool, pool, PADS)
    assert y.shape == ref_y.shape and arg.dtype == np.uint8
    # bytes, not values: the winner's own -0.0 / +0.0 and NaN
    np.testing.assert_array_equal(y.view(np.uint32)[~np.isnan(y)], ref_y.view(np.uint32)[~np.isnan(ref_y)])
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y))
    np.testing.assert_array_equal(arg, ref_arg)
    y2 = _C.max_pool2d_forward(x, pool, pool, PADS)
    np.testing.assert_array_equal(y2.view(np.uint32), y.view(np.uint32))
    ya = _C.avg_pool2d_forward(x, pool, pool, PADS)
    ref_a = R.avg_pool2d_forward(x.astype(np.float64), pool, pool, PADS)
    np.testing.assert_array_equal(np.isnan(ya), np.isnan(ref_a))
    scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isinf(x), 0, x))))) if x.size else 1.0
    np.testing.assert_allclose(ya, ref_a, rtol=1e-6, atol=1e-6 * scale)
    return y, arg, ya


@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "zeros"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}x{c[3]}_p{c[4][0]}{c[4][1]}")
def test_few_channel_tiling_forwards_match_oracle(case, kind):
    n, h, w, c, pool = case
    rng = np.random.default_rng(seeds.seed_of("rows8", case, kind))
    x = _input(rng, (n, h, w, c), kind)
    y, _, ya = _check(x, pool)
    if kind == "zeros":  # a sum of zeros from +0 is +0 (the general path's order)
        assert not np.signbit(ya).any()
    if kind == "nan" and x.size > 200:
        assert np.isnan(y).any() and np.isnan(ya).any()


@pytest.mark.parametrize("c", [1, 3, 6])
def test_few_channel_tiling_forwards_on_reused_outputs(c):
    """Outputs from the output pool hold an earlier call's values: every output float and
    argmax byte must be written (a vector's lanes past the group land on later outputs of the
    same image, which overwrite them); earlier results handed out stay unchanged."""
    rng = np.random.default_rng(seeds.seed_of("rows8-reuse", c))
    kept = []
    for i in range(4):
        x = _input(rng, (3, 14, 15, c), "nan" if i % 2 else "normal")
        y, arg, ya = _check(x, (2, 2))
        kept.append((x, y.copy(), arg.copy(), ya.copy(), y, arg, ya))
        del y, arg, ya  # back to the pool for the next call
    for x, y0, a0, ya0, y, arg, ya in kept:
        np.testing.assert_array_equal(y.view(np.uint32), y0.view(np.uint32))
        np.testing.assert_array_equal(arg, a0)
        np.testing.assert_array_equal(ya.view(np.uint32), ya0.view(np.uint32))


@pytest.mark.parametrize("shape", [(5, 28, 28, 3), (1, 56, 57, 1), (3, 9, 11, 6), (2, 130, 130, 3)])
def test_few_channel_tiling_forwards_same_on_one_and_two_threads(shape):
    """Tasks are whole images (and at batch 1 the one image on one thread): 2 threads give the
    bytes of 1 thread; (2, 130, 130, 3) is an input of 4 MiB or more."""
    rng = np.random.default_rng(seeds.seed_of("rows8-threads", shape))
    x = _input(rng, shape, "nan")
    old = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(2)
        two = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), PADS) + (_C.avg_pool2d_forward(x, (2, 2), (2, 2), PADS),)
        fastconv.set_num_threads(1)
        one = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), PADS) + (_C.avg_pool2d_forward(x, (2, 2), (2, 2), PADS),)
    finally:
        fastconv.set_num_threads(old)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    _check(x, (2, 2))


def test_few_channel_tiling_forward_reads_nothing_past_x():
    """x ends at a page boundary with the next page unmapped would be the strict test; here x
    is the tail of a larger buffer whose following floats are NaN: a read past x's last window
    row that reached a stored lane would put NaN into the result."""
    rng = np.random.default_rng(seeds.seed_of("rows8-end"))
    for c, w in [(1, 6), (3, 6), (2, 10), (5, 4), (7, 2)]:
        n, h = 2, 4
        size = n * h * w * c
        buf = np.full(size + 64, np.nan, np.float32)
        buf[:size] = rng.standard_normal(size).astype(np.float32)
        x = buf[:size].reshape(n, h, w, c)
        y, arg, ya = _check(x, (2, 2))
        assert not np.isnan(y).any() and not np.isnan(ya).any()


# (N, H, W, C, pool) for the backwards: kw == 2 takes pool_rows8's backward at C = 1, 2, 3, 4, 6
# (avx2); 5, 7 and kw != 2 the table path. Widths whose covered floats are no multiple of the
# 8 (C = 1, 2, 4) or 24 (C = 3, 6) of a period end in the scalar tail.
BACKWARD_CASES = [
    (4, 56, 56, 1, (2, 2)),
    (3, 28, 28, 6, (2, 2)),
    (2, 56, 56, 3, (2, 2)),
    (1, 112, 112, 3, (2, 2)),
    (2, 28, 28, 2, (2, 2)),
    (2, 28, 28, 4, (2, 2)),
    (2, 9, 11, 1, (2, 2)),   # odd: row 8 and column 10 in no window; 5 outputs a row
    (2, 9, 11, 2, (2, 2)),
    (2, 9, 11, 3, (2, 2)),
    (2, 9, 11, 4, (2, 2)),
    (2, 9, 11, 5, (2, 2)),
    (2, 9, 11, 6, (2, 2)),
    (2, 9, 11, 7, (2, 2)),
    (1, 7, 7, 6, (2, 2)),
    (3, 6, 10, 3, (2, 2)),   # 5 outputs a row: 30 floats, one period of 24 and a tail of 6
    (2, 5, 13, 3, (1, 2)),
    (2, 9, 8, 6, (3, 2)),
    (2, 8, 9, 1, (2, 1)),
    (2, 10, 23, 2, (3, 3)),
    (1, 2, 2, 1, (2, 2)),    # one window: dy's last entries are its first
    (1, 2, 4, 3, (2, 2)),
]


@pytest.mark.parametrize("case", BACKWARD_CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}x{c[3]}_p{c[4][0]}{c[4][1]}")
@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
def test_few_channel_tiling_backwards_match_oracle(case, kind):
    n, h, w, c, pool = case
    rng = np.random.default_rng(seeds.seed_of("rows8-backward", case, kind))
    x = _input(rng, (n, h, w, c), kind)
    y, arg = _C.max_pool2d_forward_with_argmax(x, pool, pool, PADS)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy.flat[::7] = np.nan  # a NaN gradient reaches exactly its winner (average: its window)
    dy.flat[3::11] = -0.0
    dx = _C.max_pool2d_backward_argmax(dy, arg, x.shape, pool, pool, PADS)
    ref = R.max_pool2d_backward_argmax(dy.astype(np.float64), arg, x.shape, pool, pool, PADS)
    np.testing.assert_array_equal(dx, ref.astype(np.float32))
    rows, cols = y.shape[1] * pool[0], y.shape[2] * pool[1]
    assert not dx[:, rows:].any() and not dx[:, :, cols:].any()
    dxa = _C.avg_pool2d_backward(dy, x.shape, pool, pool, PADS)
    refa = R.avg_pool2d_backward(dy.astype(np.float64), x.shape, pool, pool, PADS)
    np.testing.assert_array_equal(np.isnan(dxa), np.isnan(refa))
    np.testing.assert_allclose(dxa, refa, rtol=1e-6, atol=0)
    assert not dxa[:, rows:].any() and not dxa[:, :, cols:].any()


@pytest.mark.parametrize("c", [1, 3, 6])
def test_few_channel_tiling_backwards_on_reused_outputs_and_threads(c):
    """dx from the output pool holds an earlier call's values (NaN here): every float of it must
    be written; 2 threads give the bytes of 1 thread; a dy that is the tail of a larger buffer
    (NaN after it) is not read past."""
    rng = np.random.default_rng(seeds.seed_of("rows8-backward-reuse", c))
    shape = (3, 14, 15, c)
    x = _input(rng, shape, "ties")
    y, arg = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), PADS)
    buf = np.full(y.size + 64, np.nan, np.float32)
    buf[:y.size] = rng.standard_normal(y.size).astype(np.float32)
    dy = buf[:y.size].reshape(y.shape)
    ref = R.max_pool2d_backward_argmax(dy.astype(np.float64), arg, shape, (2, 2), (2, 2), PADS).astype(np.float32)
    refa = R.avg_pool2d_backward(dy.astype(np.float64), shape, (2, 2), (2, 2), PADS)
    old = fastconv.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 1, 2):
            fastconv.set_num_threads(threads)
            filler = _C.avg_pool2d_backward(np.full(y.shape, np.nan, np.float32), shape, (2, 2), (2, 2), PADS)
            del filler  # its block (all NaN) is the next dx of this size
            dx = _C.max_pool2d_backward_argmax(dy, arg, shape, (2, 2), (2, 2), PADS)
            np.testing.assert_array_equal(dx, ref)
            filler = _C.max_pool2d_backward_argmax(np.full(y.shape, np.nan, np.float32), np.zeros_like(arg), shape,
                                                   (2, 2), (2, 2), PADS)
            del filler
            dxa = _C.avg_pool2d_backward(dy, shape, (2, 2), (2, 2), PADS)
            np.testing.assert_allclose(dxa, refa, rtol=1e-6, atol=0)
            assert not np.isnan(dx).any() and not np.isnan(dxa).any()
            results.append((dx, dxa))
    finally:
        fastconv.set_num_threads(old)
    for dx, dxa in results[1:]:
        np.testing.assert_array_equal(dx.view(np.uint32), results[0][0].view(np.uint32))
        np.testing.assert_array_equal(dxa.view(np.uint32), results[0][1].view(np.uint32))
