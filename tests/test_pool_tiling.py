"""Pooling backward where the windows tile the input (pool == strides, no padding):
csrc/cpu/pool_tiling.cpp writes each dx cell once from its window's dy, vectorised over channels
from 16 channels on and (AVX-512) along the dx row below 16 through a permute table.

Max: dx is a selection of dy (one window per cell, no sum), so it must equal the float64
oracle's exactly, NaN cells included; average: dy * (1 / (kh*kw)) in float32 against the
float64 oracle's dy / (kh*kw), rtol 1e-6. Shapes: odd sizes (a last row / column in no
window, which must come out zero), non-square tiles, channel counts that are no multiple of 16
(the last block overlaps the one before), batch 1 (channel blocks on two threads) and larger;
the 'same' geometries with a clipped window stay on the general path (pool_max*.cpp, pool_avg.cpp) and are checked too.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

import seeds

CHANNELS = [1, 2, 3, 5, 6, 7, 8, 13, 15, 16, 17, 24, 31, 48, 64, 96]

# (N, H, W, pool), strides = pool, no pads
GEOMETRIES = [
    (3, 28, 28, (2, 2)),
    (2, 9, 11, (2, 2)),      # odd: row 8 and column 10 in no window
    (1, 14, 15, (2, 2)),     # batch 1: channel blocks shared by the threads
    (2, 10, 23, (3, 3)),
    (2, 3, 37, (1, 2)),
    (2, 8, 9, (2, 3)),
    (1, 1, 1, (1, 1)),
]


def _input(rng, shape, kind):
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "nan":
        x[rng.random(shape) < 0.05] = np.nan
        x[rng.random(shape) < 0.02] = -np.inf
    return x


@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[0]}x{g[1]}x{g[2]}_p{g[3]}")
def test_max_pool_tiling_backward_matches_oracle(geometry, c, kind):
    n, h, w, pool = geometry
    rng = np.random.default_rng(seeds.seed_of("tiling-max", geometry, c, kind))
    x = _input(rng, (n, h, w, c), kind)
    pads = (0, 0, 0, 0)
    y, arg = _C.max_pool2d_forward_with_argmax(x, pool, pool, pads)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy.flat[::7] = np.nan  # a NaN gradient reaches exactly its winner
    dx = _C.max_pool2d_backward_argmax(dy, arg, x.shape, pool, pool, pads)
    ref = R.max_pool2d_backward_argmax(dy.astype(np.float64), arg, x.shape, pool, pool, pads)
    np.testing.assert_array_equal(dx, ref.astype(np.float32))
    rows, cols = y.shape[1] * pool[0], y.shape[2] * pool[1]
    assert not dx[:, rows:].any() and not dx[:, :, cols:].any()


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[0]}x{g[1]}x{g[2]}_p{g[3]}")
def test_avg_pool_tiling_backward_matches_oracle(geometry, c):
    n, h, w, pool = geometry
    rng = np.random.default_rng(seeds.seed_of("tiling-avg", geometry, c))
    y_shape = (n, h // pool[0], w // pool[1], c)
    dy = rng.standard_normal(y_shape).astype(np.float32)
    dy.flat[::11] = np.nan
    dx = _C.avg_pool2d_backward(dy, (n, h, w, c), pool, pool, (0, 0, 0, 0))
    ref = R.avg_pool2d_backward(dy.astype(np.float64), (n, h, w, c), pool, pool, (0, 0, 0, 0))
    np.testing.assert_allclose(dx, ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("c", [16, 40])
def test_clipped_same_windows_keep_the_general_path(c):
    """'same' on an odd size pads the last window: not a tiling, the general gather path."""
    rng = np.random.default_rng(seeds.seed_of("tiling-same", c))
    x = rng.standard_normal((2, 7, 9, c)).astype(np.float32)
    pads = (0, 1, 0, 1)
    y, arg = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), pads)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = _C.max_pool2d_backward_argmax(dy, arg, x.shape, (2, 2), (2, 2), pads)
    np.testing.assert_array_equal(dx, R.max_pool2d_backward_argmax(dy.astype(np.float64), arg, x.shape,
                                                                   (2, 2), (2, 2), pads).astype(np.float32))
    dxa = _C.avg_pool2d_backward(dy, x.shape, (2, 2), (2, 2), pads)
    np.testing.assert_allclose(dxa, R.avg_pool2d_backward(dy.astype(np.float64), x.shape, (2, 2), (2, 2), pads),
                               rtol=1e-6, atol=1e-7)


def test_tiling_backward_same_on_one_and_two_threads(two_threads):
    """Batch 1 splits channels over the item team, a batch splits images over OpenMP: the
    result must not depend on the thread count (each dx cell is written by one task)."""
    import fastconv
    rng = np.random.default_rng(seeds.seed_of("tiling-threads"))
    # (1, 9, 8, 40): channel blocks of 16, 16 and 8 on the item team (the last one shorter than a
    # vector, which must not write into its neighbour's channels)
    for shape in [(1, 56, 56, 96), (8, 28, 28, 48), (1, 9, 8, 40), (1, 10, 12, 520)]:
        x = rng.standard_normal(shape).astype(np.float32)
        y, arg = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), (0, 0, 0, 0))
        dy = rng.standard_normal(y.shape).astype(np.float32)
        two = (_C.max_pool2d_backward_argmax(dy, arg, shape, (2, 2), (2, 2), (0, 0, 0, 0)),
               _C.avg_pool2d_backward(dy, shape, (2, 2), (2, 2), (0, 0, 0, 0)))
        fastconv.set_num_threads(1)
        try:
            one = (_C.max_pool2d_backward_argmax(dy, arg, shape, (2, 2), (2, 2), (0, 0, 0, 0)),
                   _C.avg_pool2d_backward(dy, shape, (2, 2), (2, 2), (0, 0, 0, 0)))
        finally:
            fastconv.set_num_threads(2)
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a, b)
        ref = R.max_pool2d_backward_argmax(dy.astype(np.float64), arg, shape, (2, 2), (2, 2), (0, 0, 0, 0))
        np.testing.assert_array_equal(two[0], ref.astype(np.float32))


@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[0]}x{g[1]}x{g[2]}_p{g[3]}")
def test_tiling_forwards_match_oracle(geometry, c, kind):
    """pool_tiling.cpp's forwards (channel vectors from 16 channels, along the rows below 16 at
    AVX-512): max and its argmax are selections, so exactly the oracle's (NaN pools to NaN, the
    last NaN cell wins, ties keep the first cell); the average sums the window in row-major
    order in float32, rtol 1e-6 against the float64 oracle, NaN where the window holds one."""
    n, h, w, pool = geometry
    rng = np.random.default_rng(seeds.seed_of("tiling-forward", geometry, c, kind))
    x = _input(rng, (n, h, w, c), kind)
    pads = (0, 0, 0, 0)
    y, arg = _C.max_pool2d_forward_with_argmax(x, pool, pool, pads)
    ref_y, ref_arg = R.max_pool2d_forward_with_argmax(x, pool, pool, pads)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(arg, ref_arg)
    np.testing.assert_array_equal(_C.max_pool2d_forward(x, pool, pool, pads), ref_y)
    ya = _C.avg_pool2d_forward(x, pool, pool, pads)
    ref_a = R.avg_pool2d_forward(x.astype(np.float64), pool, pool, pads)
    np.testing.assert_array_equal(np.isnan(ya), np.isnan(ref_a))
    np.testing.assert_allclose(ya, ref_a, rtol=1e-6, atol=1e-6)
    if kind == "nan" and x.size > 100:
        assert np.isnan(y).any() and np.isnan(ya).any()


@pytest.mark.parametrize("shape", [(1, 9, 11, 48), (2, 8, 10, 24), (2, 7, 6, 5)])
def test_tiling_backward_streamed_output_matches_oracle(shape):
    """A dx above the stream threshold (forced to 0 here) is written a row at a time from a
    scratch row by non-temporal stores (backward_tiles, from 16 channels; below 16 the flat
    path ignores it): the same values as the oracle, rows and columns in no window zero."""
    old = _C.get_stream_threshold()
    rng = np.random.default_rng(seeds.seed_of("tiling-stream", shape))
    x = _input(rng, shape, "nan")
    pads = (0, 0, 0, 0)
    y, arg = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), pads)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy.flat[::5] = np.nan
    _C.set_stream_threshold(0)
    try:
        dx = _C.max_pool2d_backward_argmax(dy, arg, shape, (2, 2), (2, 2), pads)
        dxa = _C.avg_pool2d_backward(dy, shape, (2, 2), (2, 2), pads)
    finally:
        _C.set_stream_threshold(old)
    ref = R.max_pool2d_backward_argmax(dy.astype(np.float64), arg, shape, (2, 2), (2, 2), pads)
    np.testing.assert_array_equal(dx, ref.astype(np.float32))
    np.testing.assert_allclose(dxa, R.avg_pool2d_backward(dy.astype(np.float64), shape, (2, 2), (2, 2), pads),
                               rtol=1e-6, atol=0)
    assert np.isnan(dx).any() and np.isnan(dxa).any()


# (shape, pool): below 16 channels the backward runs over the dx image as one flat run when a
# row has at most 192 floats (512 for a dx under the stream threshold), by a table that repeats
# every lcm(16, kh*W*C) floats, unless that table would pass 4096 vectors; otherwise row by row
# (backward_rows16).
LONG_ROWS = [
    ((2, 3, 8196, 1), (1, 2)),   # rows of 8196 floats: row by row
    ((2, 46, 191, 1), (23, 1)),  # band 23*191 = 4393 (odd): 4393 vectors, row by row
    ((2, 46, 190, 1), (23, 1)),  # band 4370: 2185 vectors, the flat run with 23 rows a band
    ((3, 9, 64, 3), (2, 2)),     # 192 floats a row
    ((3, 9, 112, 3), (2, 2)),    # 336 floats a row: flat below the stream threshold, else rows
]


@pytest.mark.parametrize("stream", [False, True], ids=["cached", "streamed"])
@pytest.mark.parametrize("shape,pool", LONG_ROWS)
def test_few_channel_backward_flat_and_row_paths(shape, pool, stream):
    """Both few-channel backward paths at their limits, against the oracle (stream: the
    threshold forced to 0, so rows over 192 floats take backward_rows16)."""
    if stream:
        old = _C.get_stream_threshold()
        _C.set_stream_threshold(0)
        try:
            return test_few_channel_backward_flat_and_row_paths(shape, pool, False)
        finally:
            _C.set_stream_threshold(old)
    rng = np.random.default_rng(seeds.seed_of("tiling-long", shape, pool))
    x = _input(rng, shape, "ties")
    y, arg = _C.max_pool2d_forward_with_argmax(x, pool, pool, (0, 0, 0, 0))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy.flat[::13] = np.nan
    dx = _C.max_pool2d_backward_argmax(dy, arg, shape, pool, pool, (0, 0, 0, 0))
    ref = R.max_pool2d_backward_argmax(dy.astype(np.float64), arg, shape, pool, pool, (0, 0, 0, 0))
    np.testing.assert_array_equal(dx, ref.astype(np.float32))
    dxa = _C.avg_pool2d_backward(dy, shape, pool, pool, (0, 0, 0, 0))
    np.testing.assert_allclose(dxa, R.avg_pool2d_backward(dy.astype(np.float64), shape, pool, pool, (0, 0, 0, 0)),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape", [(3, 223, 225, 7), (2, 129, 131, 33), (2, 129, 65, 64)])
def test_tiling_forward_with_prefetch_matches_oracle(shape):
    """An input of 4 MiB or more (4.21, 4.46 and 4.29 MB here) takes the forwards' prefetching
    instantiations (forward_rows16 below 16 channels at AVX-512; from 16 the max pool's cell
    order, pool_cells.cpp, up to 64 channels: 33 with a masked last channel, 64 without, and the
    average's forward_channels, 33: an overlapping last vector): odd sizes (a last row and
    column in no window), NaN and ties, against the oracle."""
    rng = np.random.default_rng(seeds.seed_of("tiling-far", shape))
    x = _input(rng, shape, "nan")
    x[1] = rng.integers(-2, 3, shape[1:]).astype(np.float32)
    pads = (0, 0, 0, 0)
    y, arg = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), pads)
    ref_y, ref_arg = R.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), pads)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(arg, ref_arg)
    ya = _C.avg_pool2d_forward(x, (2, 2), (2, 2), pads)
    ref_a = R.avg_pool2d_forward(x.astype(np.float64), (2, 2), (2, 2), pads)
    np.testing.assert_array_equal(np.isnan(ya), np.isnan(ref_a))
    np.testing.assert_allclose(ya, ref_a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
@pytest.mark.parametrize("shape,pool", [((2, 9, 7, 100), (2, 2)), ((1, 6, 8, 520), (2, 2)),
                                        ((3, 7, 10, 200), (3, 3)), ((2, 5, 9, 130), (1, 2))])
def test_max_forward_cells_many_channels_match_oracle(shape, pool, kind):
    """The max pool's cell order (pool_cells.cpp, AVX-512 from 16 channels) over many channel
    vectors per cell, the running max and argmax kept in the output pixel between cells, and a
    masked run of C % 16 channels (4, 8, 8, 2 here): values and argmax exactly the oracle's
    (ties keep the first cell, a NaN pools to NaN with the last NaN cell as argmax, -inf
    loses to any number); the argmax-free forward gives the same values."""
    rng = np.random.default_rng(seeds.seed_of("tiling-cells", shape, pool, kind))
    x = _input(rng, shape, kind)
    pads = (0, 0, 0, 0)
    y, arg = _C.max_pool2d_forward_with_argmax(x, pool, pool, pads)
    ref_y, ref_arg = R.max_pool2d_forward_with_argmax(x, pool, pool, pads)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(arg, ref_arg)
    np.testing.assert_array_equal(_C.max_pool2d_forward(x, pool, pool, pads), ref_y)
    if kind == "nan":
        assert np.isnan(y).any()
    if kind == "ties":
        assert (ref_arg > 0).any() and (ref_arg == 0).any()


def test_max_forward_cells_same_on_one_and_two_threads(two_threads):
    """Batch 1 on two threads splits the channels into blocks of 16 (pool_tasks.h), the last
    one shorter (520 = 2 x 256 + 8; 40 = 16 + 16 + 8: a block with only the masked run): the
    cell order works on [c0, c1) of each pixel, so the result equals one thread's and the
    oracle's."""
    import fastconv
    rng = np.random.default_rng(seeds.seed_of("tiling-cells-threads"))
    for shape in [(1, 10, 12, 520), (1, 9, 8, 40), (4, 6, 6, 72)]:
        x = _input(rng, shape, "nan")
        two = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), (0, 0, 0, 0))
        fastconv.set_num_threads(1)
        try:
            one = _C.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), (0, 0, 0, 0))
        finally:
            fastconv.set_num_threads(2)
        ref = R.max_pool2d_forward_with_argmax(x, (2, 2), (2, 2), (0, 0, 0, 0))
        for a, b, r in zip(one, two, ref):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(b, r)


@pytest.mark.parametrize("shape,pool", [((2, 9, 7, 128), (2, 2)), ((1, 6, 8, 136), (2, 2)),
                                        ((2, 7, 10, 200), (3, 3)), ((2, 5, 9, 130), (1, 2))])
def test_tiling_backward_long_cells_match_oracle(shape, pool):
    """From 128 channels the backward writes each window cell's run whole, one column after the
    other (pool_tiling.cpp tile_row): odd sizes (a last row and column in no window: zero), a
    last channel vector overlapping the one before (136, 200, 130), NaN in dy reaching exactly
    its winner (max) or its window's cells (average), against the oracle."""
    rng = np.random.default_rng(seeds.seed_of("tiling-long-cells", shape, pool))
    x = _input(rng, shape, "ties")
    pads = (0, 0, 0, 0)
    y, arg = _C.max_pool2d_forward_with_argmax(x, pool, pool, pads)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy.flat[::9] = np.nan
    dx = _C.max_pool2d_backward_argmax(dy, arg, shape, pool, pool, pads)
    np.testing.assert_array_equal(dx, R.max_pool2d_backward_argmax(dy.astype(np.float64), arg, shape, pool, pool,
                                                                   pads).astype(np.float32))
    dxa = _C.avg_pool2d_backward(dy, shape, pool, pool, pads)
    np.testing.assert_allclose(dxa, R.avg_pool2d_backward(dy.astype(np.float64), shape, pool, pool, pads),
                               rtol=1e-6, atol=0)
    rows, cols = y.shape[1] * pool[0], y.shape[2] * pool[1]
    assert not dx[:, rows:].any() and not dx[:, :, cols:].any() and not dxa[:, rows:].any()
    assert np.isnan(dx).any() and np.isnan(dxa).any()
