"""Kernels on (rows, C) data with few channels against the NumPy oracle: the paths of
csrc/cpu that treat short rows as a flat or transposed problem (issue 18, item 3).

- softmax backward at 1..8 classes splits a register of rows into planar registers (pixel_transpose.h),
  as the forward does; backward at 9..64 (AVX-512) runs each row in masked registers, as the
  forward does at 17..128 (test_softmax_dense_planes.py covers the forward's new paths);
  softmax forward at 9..16 (below 64 at the other levels) and backward below 17 run 16 rows at a
  time in a transposed tile
  (widths 1..16 compiled as constants), so the cases cover every width class: constants
  (1, 2, 3, 5, 6, 15, 16), runtime widths (17, 33, 63) and the row path on either side (64,
  65); row counts that are and are not multiples of 16; one threaded case each.
- batch norm and bias+relu at few channels reduce over many rows per float accumulator.

Tolerances: softmax at rtol 2e-6 / atol 1e-7 (exp_vec's few-ulp error and a float sum of < 64
terms); batch norm at rtol 1e-5 / atol 1e-6 (float sums of 64 terms folded into double);
gradients' column sums the same. NaN: a NaN logit makes its whole softmax row NaN and leaves
the other rows alone; a NaN in batch norm's input makes its channel's outputs NaN.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

import seeds
from threads_used import threads_used

WIDTHS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 24, 33, 63, 64, 65]
ROWS = [1, 15, 16, 37, 160]


def _rng(*parts):
    return np.random.default_rng(seeds.seed_of("narrow_rows", *parts))


@pytest.mark.parametrize("c", WIDTHS)
@pytest.mark.parametrize("rows", ROWS)
def test_softmax_forward_and_backward_match_oracle(rows, c):
    rng = _rng("softmax", rows, c)
    x = (3 * rng.standard_normal((rows, c))).astype(np.float32)
    dy = rng.standard_normal((rows, c)).astype(np.float32)
    y = _C.softmax_forward(x)
    np.testing.assert_allclose(y, R.softmax_forward(x.astype(np.float64)), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=2e-6)
    dx = _C.softmax_backward(dy, y)
    np.testing.assert_allclose(dx, R.softmax_backward(dy.astype(np.float64), y.astype(np.float64)),
                               rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("c", [3, 6, 17])
def test_softmax_threaded_matches_single_thread_and_oracle(c, two_threads):
    rng = _rng("softmax-threads", c)
    rows = 40_000 // c * 3 + 5  # > kParallelGrain elements, not a multiple of 16 rows
    x = rng.standard_normal((rows, c)).astype(np.float32)
    dy = rng.standard_normal((rows, c)).astype(np.float32)
    with threads_used() as used:
        y = _C.softmax_forward(x)
        dx = _C.softmax_backward(dy, y)
    assert used.count == 2
    np.testing.assert_allclose(y, R.softmax_forward(x.astype(np.float64)), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(dx, R.softmax_backward(dy.astype(np.float64), y.astype(np.float64)),
                               rtol=2e-6, atol=1e-6)
    fastconv.set_num_threads(1)
    np.testing.assert_array_equal(_C.softmax_forward(x), y)  # rows are independent: same bits


@pytest.mark.parametrize("c", [1, 3, 6, 16, 17, 63])
def test_softmax_nan_fills_its_row_only_and_large_logits_stay_finite(c):
    rng = _rng("softmax-nan", c)
    x = rng.standard_normal((37, c)).astype(np.float32)
    x[5, c // 2] = np.nan
    x[20] *= 1e4  # exp of x - max: no overflow
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = _C.softmax_forward(x)
    assert np.isnan(y[5]).all()
    others = np.delete(np.arange(37), 5)
    assert np.isfinite(y[others]).all()
    np.testing.assert_allclose(y[others], R.softmax_forward(x[others].astype(np.float64)), rtol=2e-6, atol=1e-7)
    dx = _C.softmax_backward(dy, y)
    assert np.isnan(dx[5]).all() and np.isfinite(dx[others]).all()


# 20000 rows: past a flush of the float accumulators at every width (C = 1: 256 rows per group,
# 64 groups per flush) and over the threading grain.
BN_WIDTHS = [1, 2, 3, 5, 6, 15, 16, 17]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("c", BN_WIDTHS)
def test_batch_norm_few_channels_matches_oracle(c, relu):
    rng = _rng("bn", c, relu)
    m = 20_000
    # |mean| >> std on some channels: the pivot keeps E[d^2] - E[d]^2 from cancelling
    x = (rng.standard_normal((m, c)) * 0.5 + rng.uniform(-40, 40, c)).astype(np.float32)
    gamma = rng.uniform(0.5, 2, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    dy = rng.standard_normal((m, c)).astype(np.float32)
    y, mean, var, inv_std = _C.batch_norm_forward_train(x, gamma, beta, 1e-3, relu)
    ry, rmean, rvar, rinv = R.batch_norm_forward_train(x.astype(np.float64), gamma, beta, 1e-3, relu)
    np.testing.assert_allclose(mean, rmean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(var, rvar, rtol=1e-5)
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=2e-5)
    grads = _C.batch_norm_backward(dy, x, gamma, mean, inv_std, *([beta] if relu else []))
    expected = R.batch_norm_backward(dy.astype(np.float64), x.astype(np.float64), gamma, mean.astype(np.float64),
                                     inv_std.astype(np.float64), beta if relu else None)
    for got, want, name in zip(grads, expected, ("dx", "dgamma", "dbeta")):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=name)


@pytest.mark.parametrize("c", [1, 3, 6])
def test_batch_norm_nan_poisons_only_its_channel(c):
    rng = _rng("bn-nan", c)
    x = rng.standard_normal((20_000, c)).astype(np.float32)
    x[12_345, c - 1] = np.nan
    gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    y, mean, var, inv_std = _C.batch_norm_forward_train(x, gamma, beta, 1e-3, False)
    assert np.isnan(mean[c - 1]) and np.isnan(y[:, c - 1]).all()
    assert np.isfinite(y[:, : c - 1]).all() and np.isfinite(mean[: c - 1]).all()


@pytest.mark.parametrize("c", BN_WIDTHS)
def test_bias_relu_backward_bias_gradient_few_channels(c):
    rng = _rng("bias", c)
    m = 20_000
    x = rng.standard_normal((m, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    dy = rng.standard_normal((m, c)).astype(np.float32)
    y = _C.bias_act_forward(x, b, "relu")
    np.testing.assert_allclose(y, R.bias_act_forward(x, b, "relu"), rtol=1e-6)
    dz, db = _C.bias_act_backward(dy, y, "relu", True)
    rdz, rdb = R.bias_act_backward(dy.astype(np.float64), y.astype(np.float64), "relu", True)
    np.testing.assert_array_equal(dz, rdz.astype(np.float32))
    np.testing.assert_allclose(db, rdb, rtol=1e-5, atol=1e-3)


# Pooling: channel counts >= 16 that are not multiples of 16 finish with one vector over the
# last 16 channels (overlapping the previous one); with 2 threads a single image is split
# into channel blocks of 16k channels plus a short last block (C = 40: 16, 16, 8).
POOL_GEOMETRIES = [
    (14, 14, (2, 2), (2, 2), (0, 0, 0, 0)),   # 7 outputs per row: a partial packed group at C < 16
    (9, 13, (3, 3), (2, 2), (1, 1, 1, 1)),    # 'same': clipped windows at both edges
    (7, 11, (3, 3), (1, 1), (1, 1, 1, 1)),    # stride 1, overlapping windows
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c", [17, 24, 31, 40, 100])
@pytest.mark.parametrize("geometry", POOL_GEOMETRIES, ids=lambda g: "x".join(map(str, g[:2])) + f"_s{g[3][0]}")
def test_pool_channel_tails_match_oracle(geometry, c, threads):
    h, w, pool, strides, pads = geometry
    rng = _rng("pool-tail", geometry, c, threads)
    x = rng.integers(-3, 4, (1 if threads == 2 else 2, h, w, c)).astype(np.float32)  # many ties
    x[0, 1, 2, c - 1] = np.nan
    x[-1, 3, 4, c - 20] = np.nan
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        y, arg = _C.max_pool2d_forward_with_argmax(x, pool, strides, pads)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = _C.max_pool2d_backward_argmax(dy, arg, x.shape, pool, strides, pads)
        ya = _C.avg_pool2d_forward(x, pool, strides, pads)
        dxa = _C.avg_pool2d_backward(dy, x.shape, pool, strides, pads)
    finally:
        fastconv.set_num_threads(before)
    ref_y, ref_arg = R.max_pool2d_forward_with_argmax(x, pool, strides, pads)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(arg, ref_arg)
    np.testing.assert_allclose(dx, R.max_pool2d_backward_argmax(dy.astype(np.float64), ref_arg, x.shape, pool,
                                                                strides, pads), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ya, R.avg_pool2d_forward(x.astype(np.float64), pool, strides, pads),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dxa, R.avg_pool2d_backward(dy.astype(np.float64), x.shape, pool, strides, pads),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k, m", [(1, 1), (3, 3), (6, 1), (64, 2), (5, 15), (17, 63), (16, 64), (3, 65)])
def test_dense_narrow_outputs_bias_and_bias_gradient(k, m, threads):
    """m < 64 adds the bias after the product (tiled, flat runs); the bias gradient is
    parallel.h's column reduction at every width."""
    rng = _rng("dense", k, m, threads)
    n = 5000 + 3
    x, dy = rng.standard_normal((n, k)).astype(np.float32), rng.standard_normal((n, m)).astype(np.float32)
    w, b = rng.standard_normal((k, m)).astype(np.float32), rng.standard_normal(m).astype(np.float32)
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        y = _C.dense_forward(x, w, b)
        dx, dw, db = _C.dense_backward(dy, x, w)
    finally:
        fastconv.set_num_threads(before)
    rx, rw, rdy = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    np.testing.assert_allclose(y, rx @ rw + b, rtol=1e-5, atol=1e-5 * np.sqrt(k))
    np.testing.assert_allclose(dx, rdy @ rw.T, rtol=1e-5, atol=1e-5 * np.sqrt(m))
    np.testing.assert_allclose(dw, rx.T @ rdy, rtol=1e-5, atol=1e-5 * np.sqrt(n))
    np.testing.assert_allclose(db, rdy.sum(axis=0), rtol=1e-5, atol=1e-5 * np.sqrt(n))
    x[7, 0] = np.nan  # NaN propagates to its row of y
    y = _C.dense_forward(x, w, b)
    assert np.isnan(y[7]).all() and np.isfinite(np.delete(y, 7, axis=0)).all()


@pytest.mark.parametrize("widths", [(1, 1), (3, 3), (1, 15, 16, 17), (6, 1, 2), (64, 32, 1)])
@pytest.mark.parametrize("threads", [1, 2])
def test_concat_last_short_runs_match_numpy(widths, threads):
    """Runs under 16 floats are copied inline, longer ones by memcpy; NaN is data, copied."""
    rng = _rng("concat", widths, threads)
    rows = 40_000 // sum(widths) + 7
    arrays = [rng.standard_normal((rows, w)).astype(np.float32) for w in widths]
    arrays[0][3, 0] = np.nan
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        got = _C.concat_last(arrays)
    finally:
        fastconv.set_num_threads(before)
    np.testing.assert_array_equal(got, np.concatenate(arrays, axis=-1))
