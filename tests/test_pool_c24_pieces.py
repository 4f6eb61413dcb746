"""Max pooling forward over tiling windows (pool == strides, no padding) at C = 8..64 in whole
registers (csrc/cpu/pool_c24_pieces.cpp, the avx2 level; past a multiple of 8 the last register
overlapping the one before; at avx512 and baseline the same calls
take pool_tiling.cpp / pool_max.cpp, against the same oracle). Run at every level (FASTCONV_ISA).

Max and its argmax are selections: they must equal the oracle's exactly, bytes included: NaN
pools to NaN and the last NaN cell is the argmax, ties (and -0.0 against +0.0) keep the first
cell in row-major order; max_pool2d_forward (no argmax) gives the same bytes.

Shapes: the sweep's 2x2 cases scaled down (56x56 C = 24, 28x28 C = 24 / 48 / 64), every C =
8, 16, ..., 64, others in between (9, 12, 13, 17, 20, 31, 33, 44, 63), 72 (another path), odd sizes (a last row and column in no
window), batch 1 on 1 and 2 threads (channel blocks of 16 and 8: a task of 1..8 registers),
windows 1x1, 1x2, 2x1, 3x3, 2x4, 4x4; outputs from the pool holding earlier values; x the head
of a buffer whose next floats are NaN (nothing read past x reaches a result).
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

import seeds

PADS = (0, 0, 0, 0)

CASES = [  # (N, H, W, C, pool)
    (2, 56, 56, 24, (2, 2)),
    (3, 28, 28, 24, (2, 2)),
    (1, 28, 28, 48, (2, 2)),
    (2, 14, 14, 64, (2, 2)),
    (1, 112, 112, 24, (2, 2)),
    (2, 9, 11, 8, (2, 2)),
    (2, 9, 11, 16, (2, 2)),
    (2, 9, 11, 24, (2, 2)),
    (2, 9, 11, 32, (2, 2)),
    (2, 9, 11, 40, (2, 2)),
    (2, 9, 11, 48, (2, 2)),
    (2, 9, 11, 56, (2, 2)),
    (2, 9, 11, 64, (2, 2)),
    (2, 9, 11, 12, (2, 2)),   # not a multiple of 8: the last register overlaps the one before
    (2, 9, 11, 20, (2, 2)),
    (2, 9, 11, 9, (2, 2)),
    (2, 9, 11, 13, (2, 2)),
    (2, 9, 11, 17, (2, 2)),
    (2, 9, 11, 31, (2, 2)),
    (2, 9, 11, 33, (2, 2)),
    (2, 9, 11, 63, (2, 2)),
    (3, 28, 28, 12, (2, 2)),
    (2, 10, 23, 20, (3, 3)),
    (2, 8, 9, 44, (2, 4)),
    (2, 7, 7, 72, (2, 2)),    # past 64: other paths
    (1, 13, 13, 24, (2, 2)),
    (2, 5, 13, 24, (1, 2)),
    (2, 8, 9, 16, (2, 1)),
    (2, 10, 23, 24, (3, 3)),
    (2, 8, 9, 40, (2, 4)),
    (1, 9, 9, 8, (4, 4)),
    (2, 4, 4, 24, (1, 1)),
    (1, 2, 2, 24, (2, 2)),    # one output
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
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y))
    ok = ~np.isnan(y)
    np.testing.assert_array_equal(y.view(np.uint32)[ok], ref_y.view(np.uint32)[ok])  # -0.0 / +0.0
    np.testing.assert_array_equal(arg, ref_arg)
    y2 = _C.max_pool2d_forward(x, pool, pool, PADS)
    np.testing.assert_array_equal(y2.view(np.uint32), y.view(np.uint32))
    return y, arg


def _with_threads(n, fn):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(n)
    try:
        return fn()
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "zeros"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}x{c[3]}_p{c[4][0]}{c[4][1]}")
def test_max_pool_forward_matches_oracle(case, kind):
    n, h, w, c, pool = case
    rng = np.random.default_rng(seeds.seed_of("pool_c24", case, kind))
    x = _input(rng, (n, h, w, c), kind)
    y, _ = _check(x, pool)
    if kind == "nan" and x.size > 2000:
        assert np.isnan(y).any()


@pytest.mark.parametrize("shape", [(1, 56, 56, 24), (1, 28, 28, 40), (1, 14, 14, 64), (3, 28, 28, 24),
                                   (1, 9, 11, 56), (1, 28, 28, 44), (1, 28, 28, 20), (1, 28, 28, 36),
                                   (1, 28, 28, 12)])
def test_one_and_two_threads_give_the_same_bytes(shape):
    """Batch 1 on 2 threads splits the channels into blocks of 16 and a last one (44: 16, 16, 12;
    a last block under 8, 20: 16 + 4, 36: 16, 16, 4, keeps the other paths)."""
    x = _input(np.random.default_rng(seeds.seed_of("pool_c24-threads", shape)), shape, "nan")
    one = _with_threads(1, lambda: _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), PADS))
    two = _with_threads(2, lambda: _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), PADS))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    _with_threads(2, lambda: _check(x, (2, 2)))


@pytest.mark.parametrize("c", [8, 12, 24, 61, 64])
def test_outputs_from_the_pool_are_all_rewritten(c):
    """Outputs from the output pool hold an earlier call's values: every float and byte is set."""
    rng = np.random.default_rng(seeds.seed_of("pool_c24-reuse", c))
    for _ in range(3):
        x = _input(rng, (2, 14, 15, c), "normal")
        _check(x, (2, 2))
        _check(-x, (2, 2))


def test_reads_nothing_past_x():
    """x is the head of a larger buffer whose following floats are NaN: a read past x's last
    window that reached a result would put NaN into it."""
    rng = np.random.default_rng(seeds.seed_of("pool_c24-end"))
    for c, w in [(8, 6), (24, 5), (40, 4), (64, 2), (12, 5), (57, 3)]:
        n, h = 2, 5
        size = n * h * w * c
        buf = np.full(size + 256, np.nan, np.float32)
        buf[:size] = rng.standard_normal(size).astype(np.float32)
        x = buf[:size].reshape(n, h, w, c)
        y, _ = _check(x, (2, 2))
        assert not np.isnan(y).any()
