"""The relu backward with a bias gradient when a period of lcm(c, register) floats is at most
8 registers (csrc/cpu/activation.cpp relu_backward_lanes: at AVX-512 c = 1, 2, 4, 8, 16 in one
register, 3, 6, 12, 24, 48 in three, 32 .. 128 in c / 16, 40 and 80 in five, 7, 56 and 112 in
seven; fewer at avx2 / baseline), against the float64 oracle.

The column sums stay in register lanes (lane l of register v is channel (16 v + l) % c), each
lane folding into double after at most 64 terms, so db is judged at test_native_ops' bias
tolerance (rtol 1e-5 of the sum of |dz| of the channel, the bound of a float sum of 64 terms
folded in double); dz is exact (dy or dy * 0). Cases: element counts with and without a
scalar tail, more than one fold block (64 steps per accumulator), channel counts off the path
(9, 144: the column_reduce runs), 3 threads (a thread share starting mid-period), the streamed output (column_reduce), and NaN / inf in dy.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

import seeds
from threads_used import threads_used


def _data(m, c, tag):
    rng = np.random.default_rng(seeds.seed_of("bias_relu_lanes", tag, m, c))
    y = np.maximum(rng.standard_normal((m, c)), 0).astype(np.float32)  # a relu's output
    y[rng.random((m, c)) < 0.1] = 0.0
    dy = rng.standard_normal((m, c)).astype(np.float32)
    return dy, y


def _check(dy, y):
    dz, db = _C.bias_act_backward(dy, y, "relu", True)
    rdz, rdb = R.bias_act_backward(dy.astype(np.float64), y.astype(np.float64), "relu", True)
    np.testing.assert_array_equal(dz, rdz.astype(np.float32))
    np.testing.assert_array_equal(dz, dy * (y > 0))
    scale = np.abs(rdz).sum(axis=0)
    np.testing.assert_allclose(db, rdb, rtol=0, atol=1e-5 * float(scale.max()) + 1e-30)
    assert np.all(np.abs(db - rdb) <= 1e-5 * scale + 1e-30)
    return dz, db


# m * c: below one register, a whole number of 4-register blocks, > 64 blocks with a tail
@pytest.mark.parametrize("c", [1, 2, 3, 4, 6, 7, 8, 16, 24, 32, 40, 48, 128, 9, 144])
@pytest.mark.parametrize("m", [1, 7, 64, 4096 * 3 + 37, 20000 + 3])
def test_relu_backward_bias_matches_oracle(c, m):
    _check(*_data(m, c, "plain"))


def test_relu_backward_bias_nhwc_batches():
    for shape in [(1, 5, 7, 1), (3, 9, 11, 4), (2, 13, 13, 16), (5, 3, 3, 8), (2, 7, 9, 64), (1, 3, 5, 96)]:
        rng = np.random.default_rng(seeds.seed_of("bias_relu_lanes", "nhwc", *shape))
        x, b = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape[-1]).astype(np.float32)
        y = _C.bias_act_forward(x, b, "relu")
        dy = rng.standard_normal(shape).astype(np.float32)
        dz, db = _C.bias_act_backward(dy, y, "relu", True)
        rdz, rdb = R.bias_act_backward(dy.astype(np.float64), y.astype(np.float64), "relu", True)
        np.testing.assert_array_equal(dz, rdz.astype(np.float32))
        np.testing.assert_allclose(db, rdb, rtol=1e-5, atol=1e-5 * float(np.abs(rdz).sum()))


@pytest.mark.parametrize("c,m", [(1, 100003), (4, 30011), (6, 30011), (7, 20011), (24, 9001), (48, 3001), (128, 1031), (9, 30011)])
def test_relu_backward_bias_three_threads(c, m):
    dy, y = _data(m, c, "threads")
    one = _check(dy, y)
    old = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(3)
        with threads_used() as used:
            three = _check(dy, y)
        assert used.count >= 2
        again = _C.bias_act_backward(dy, y, "relu", True)
        np.testing.assert_array_equal(three[1], again[1])  # deterministic per thread count
    finally:
        fastconv.set_num_threads(old)
    np.testing.assert_array_equal(one[0], three[0])


@pytest.mark.parametrize("c", [1, 8, 24, 64])
def test_relu_backward_bias_streamed_output(c):
    dy, y = _data(20011, c, "stream")
    plain = _check(dy, y)
    old = _C.get_stream_threshold()
    try:
        _C.set_stream_threshold(1 << 12)
        streamed = _check(dy, y)  # column_reduce: another summation order
    finally:
        _C.set_stream_threshold(old)
    np.testing.assert_array_equal(plain[0], streamed[0])


@pytest.mark.parametrize("c", [1, 2, 6, 8, 16, 24, 48, 128])
def test_relu_backward_bias_nan_and_inf(c):
    m = 4096 + 5
    dy, y = _data(m, c, "nan")
    j_nan, j_inf = c - 1, 0
    y[10, j_nan] = 0.0
    dy[10, j_nan] = np.nan  # relu off: dy * 0 keeps the NaN
    y[m - 1, j_nan] = 1.0
    dy[m - 1, j_nan] = np.nan  # in the scalar tail where there is one
    if c > 1:
        y[20, j_inf] = 1.0
        dy[20, j_inf] = np.inf
    dz, db = _C.bias_act_backward(dy, y, "relu", True)
    assert np.isnan(dz[10, j_nan]) and np.isnan(dz[m - 1, j_nan]) and np.isnan(db[j_nan])
    if c > 1:
        assert dz[20, j_inf] == np.inf and db[j_inf] == np.inf
        others = np.ones(c, bool)
        others[[j_nan, j_inf]] = False
        assert np.isfinite(db[others]).all()
    y[20, 0], dy[20, 0] = 0.0, np.inf  # relu off: inf * 0 is NaN, as dy * (y > 0)
    dz, db = _C.bias_act_backward(dy, y, "relu", True)
    assert np.isnan(dz[20, 0]) and np.isnan(db[0])
