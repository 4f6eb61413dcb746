"""Batch norm's register-blocked walk (csrc/cpu/batchnorm_flat.h) against the NumPy oracle.

The (m, c) array is walked as super-rows of `period` floats (lcm(c, 16), doubled up to 128
floats) plus tail rows, in column blocks of up to 8 registers (fewer at avx2 / baseline and in
the backward passes): the cases cover periods of one block (c = 1, 6, 16, 24, 96, 128), of
several blocks with a narrower last one (c = 100: period 400; 129: 2064; 256, 300, 512: the
forward's path while x is under the streaming threshold, the backward's runs), row
counts with and without tail rows and with no whole super-row at all, more than 64 super-rows
(a flush of the float accumulators), the fused relu, 3 threads, the streaming output, and
NaN / inf in x and dy.

Tolerances as test_narrow_rows.py's (float sums of <= 64 terms folded into double): mean rtol
1e-6 / atol 1e-6, var rtol 1e-5, y rtol 1e-5 / atol 2e-5; gradients rtol 1e-4 with an atol of
1e-4 of the largest magnitude.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

import seeds
from threads_used import threads_used

# (c, m): m = whole super-rows + a tail, exactly whole super-rows, fewer rows than one.
CASES = [(1, 128 * 70 + 37), (6, 16 * 65 + 5), (6, 11), (16, 8 * 3), (24, 4 * 70 + 3), (96, 97),
         (128, 130), (100, 4 * 66 + 3), (129, 16 * 2 + 15), (129, 9), (256, 70), (300, 35),
         (512, 66)]


def _rng(*parts):
    return np.random.default_rng(seeds.seed_of("batchnorm_flat", *parts))


def _data(c, m, tag):
    rng = _rng(tag, c, m)
    # |mean| >> std on some channels: the pivot keeps E[d^2] - E[d]^2 from cancelling
    x = (rng.standard_normal((m, c)) * 0.5 + rng.uniform(-40, 40, c)).astype(np.float32)
    gamma = rng.uniform(0.5, 2, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    dy = rng.standard_normal((m, c)).astype(np.float32)
    return x, gamma, beta, dy


def _check(x, gamma, beta, dy, relu, call=lambda f, *a: f(*a)):
    y, mean, var, inv_std = call(_C.batch_norm_forward_train, x, gamma, beta, 1e-3, relu)
    ry, rmean, rvar, _ = R.batch_norm_forward_train(x.astype(np.float64), gamma, beta, 1e-3, relu)
    np.testing.assert_allclose(mean, rmean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(var, rvar, rtol=1e-5)
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=2e-5)
    yi = call(_C.batch_norm_forward_inference, x, gamma, beta, mean, var, 1e-3, relu)
    ryi = R.batch_norm_forward_inference(x.astype(np.float64), gamma, beta, mean.astype(np.float64),
                                         var.astype(np.float64), 1e-3, relu)
    np.testing.assert_allclose(yi, ryi, rtol=1e-5, atol=2e-5)
    grads = call(_C.batch_norm_backward, dy, x, gamma, mean, inv_std, *([beta] if relu else []))
    expected = R.batch_norm_backward(dy.astype(np.float64), x.astype(np.float64), gamma,
                                     mean.astype(np.float64), inv_std.astype(np.float64),
                                     beta if relu else None)
    for got, want, name in zip(grads, expected, ("dx", "dgamma", "dbeta")):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=name)
    return (y, mean, var, inv_std, yi) + tuple(grads)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("c,m", CASES)
def test_batch_norm_blocks_match_oracle(c, m, relu):
    _check(*_data(c, m, "oracle"), relu)


@pytest.mark.parametrize("c,m", [(6, 1000), (24, 4 * 70 + 3)])
def test_batch_norm_nhwc_batch_and_odd_sizes(c, m):
    # The binding's view of (n, h, w, c) as (n*h*w, c): batch 1 and > 1, odd spatial sizes.
    for shape in ((1, 7, 9, c), (3, 5, 11, c)):
        rng = _rng("nhwc", c, shape)
        x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
        gamma, beta = rng.uniform(0.5, 2, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        _check(x, gamma, beta, dy, False)


@pytest.mark.parametrize("c,m", [(6, 16 * 400 + 7), (128, 300), (512, 70), (129, 16 * 20 + 5)])
def test_batch_norm_blocks_three_threads(c, m):
    x, gamma, beta, dy = _data(c, m, "threads")
    old = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(3)  # uneven share of the super-rows, tail on the last thread

        def on_threads(f, *a):
            with threads_used() as used:
                out = f(*a)
            assert used.count >= 2
            return out

        for relu in (False, True):
            three = _check(x, gamma, beta, dy, relu, on_threads)
            assert all(np.array_equal(a, b) for a, b in zip(three, _check(x, gamma, beta, dy, relu, on_threads)))
    finally:
        fastconv.set_num_threads(old)


# (300, 40): a wide period, whose forward walks in registers only under the streaming
# threshold (forward_in_registers): streamed, it takes parallel.h's runs, another summation
# order, so only the oracle judges it; (6, ...) keeps its path, so the values stay identical.
@pytest.mark.parametrize("c,m,same_path", [(6, 16 * 70 + 9, True), (300, 40, False)])
def test_batch_norm_streamed_output_matches(c, m, same_path):
    x, gamma, beta, dy = _data(c, m, "stream")
    plain = _check(x, gamma, beta, dy, True)
    old = _C.get_stream_threshold()
    try:
        _C.set_stream_threshold(1 << 12)
        streamed = _check(x, gamma, beta, dy, True)
    finally:
        _C.set_stream_threshold(old)
    if same_path:
        for a, b in zip(plain, streamed):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("c,m", [(6, 16 * 65 + 5), (100, 4 * 66 + 3), (512, 66)])
def test_batch_norm_blocks_nan_and_inf_propagate(c, m):
    x, gamma, beta, dy = _data(c, m, "nan")
    bad_nan, bad_inf = c - 1, c // 2  # a channel of the last column block, one in the middle
    x[m - 1, bad_nan] = np.nan  # in the tail rows where there are any
    x[m // 2, bad_inf] = np.inf
    y, mean, var, inv_std = _C.batch_norm_forward_train(x, gamma, beta, 1e-3, False)
    assert np.isnan(mean[bad_nan]) and np.isnan(y[:, bad_nan]).all()
    assert mean[bad_inf] == np.inf
    good = np.ones(c, bool)
    good[[bad_nan, bad_inf]] = False
    assert np.isfinite(y[:, good]).all() and np.isfinite(mean[good]).all()
    # NaN in dy (relu masking must keep it: dy * 0, not 0) only reaches its channel.
    xf, dyn = _data(c, m, "nan-dy")[0], dy.copy()
    dyn[3, bad_nan] = np.nan
    _, mean, _, inv_std = _C.batch_norm_forward_train(xf, gamma, beta, 1e-3, True)
    for relu_beta in ([], [np.full(c, -1e9, np.float32)]):  # relu_beta -1e9: every y <= 0, dy * 0
        dx, dgamma, dbeta = _C.batch_norm_backward(dyn, xf, gamma, mean, inv_std, *relu_beta)
        assert np.isnan(dx[:, bad_nan]).all() and np.isnan(dbeta[bad_nan])
        assert np.isfinite(dx[:, :bad_nan]).all() and np.isfinite(dbeta[:bad_nan]).all()
