"""Small OpenMP regions on one thread, and direct_forward's buffers without a malloc a call
(stop 39, helper R; csrc/cpu/parallel.h kTeamGrain, threads.cpp kParallelGemmWork,
direct_conv.cpp kParallelWork, csrc/cpu/team_buffers.h).

- direct_forward (both its generic tap-block kernel and its channel-vectorised one) against the
  float64 oracle, with a tap list on the stack (<= 256 taps) and past it (a heap copy), and
  packing buffers that fit the thread's reused one and that spill past it (a row wider than
  256 KiB); calls of growing and shrinking sizes in turn reuse the thread's buffer, and a
  repeated call gives the same bits.
- At 2 threads the thread count moves only where the work crossed a threshold, and the
  elementwise kernels (average pool, SGD) give the same bits on one thread and on two.
- NaN propagates through the direct forward.
Tolerances: 1e-5 of the result's magnitude (float32 sums of at most a few hundred terms).
"""
import os

import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from threads_used import threads_used


def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


def _forward_case(seed, n, h, w, c, oc, k, pads, act=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = (rng.standard_normal((k, k, c, oc)) / np.sqrt(k * k * c)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    args = ((1, 1), pads, (1, 1), 1)
    assert _C.conv_algorithm(x.shape, wt.shape, *args)["forward"] == "direct"
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    return x, wt, b, args, ref


# (n, h, w, c, oc, k, pads): LeNet-5's two convs (C = 1 'same': the channel-vectorised kernel;
# C = 6 valid: the tap-block kernel) at batch 1 and odd batches, kernels past the 256 taps
# held on the stack (9x9x4 = 324, 7x7x6 = 294), and a 2100-pixel row of 8 channels, whose
# 5 packed input rows (84 K floats) spill past the thread's 64 K-float buffer.
FORWARD_CASES = [
    (1, 28, 28, 1, 6, 5, (2, 2, 2, 2)),
    (3, 28, 28, 1, 6, 5, (2, 2, 2, 2)),
    (1, 14, 14, 6, 16, 5, (0, 0, 0, 0)),
    (5, 14, 14, 6, 16, 5, (0, 0, 0, 0)),
    (1, 13, 17, 4, 8, 9, (4, 4, 4, 4)),
    (2, 11, 19, 6, 16, 7, (0, 0, 0, 0)),
    (1, 6, 2100, 8, 16, 5, (0, 0, 0, 0)),
    (1, 5, 2101, 1, 6, 5, (2, 2, 2, 2)),
]


@pytest.mark.parametrize("case", FORWARD_CASES)
def test_direct_forward_matches_oracle(case):
    n, h, w, c, oc, k, pads = case
    x, wt, b, args, ref = _forward_case(11, n, h, w, c, oc, k, pads)
    y = _C.conv2d_forward(x, wt, b, *args)
    _close(y, ref)
    np.testing.assert_array_equal(_C.conv2d_forward(x, wt, b, *args), y)  # same bits again


def test_direct_forward_buffers_reused_across_sizes():
    """Small, spilling, small again, with more taps in between: each call against the oracle
    (a buffer sized for one call must not be read stale by the next)."""
    order = [FORWARD_CASES[2], FORWARD_CASES[6], FORWARD_CASES[3], FORWARD_CASES[4], FORWARD_CASES[0],
             FORWARD_CASES[7], FORWARD_CASES[2]]
    for i, (n, h, w, c, oc, k, pads) in enumerate(order):
        x, wt, b, args, ref = _forward_case(100 + i, n, h, w, c, oc, k, pads)
        _close(_C.conv2d_forward(x, wt, b, *args), ref)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", [FORWARD_CASES[1], FORWARD_CASES[3], FORWARD_CASES[5]])
def test_direct_forward_threads(case, threads):
    n, h, w, c, oc, k, pads = case
    x, wt, b, args, ref = _forward_case(7, 2 * n + 1, h, w, c, oc, k, pads)
    saved = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        _close(_C.conv2d_forward(x, wt, b, *args), ref)
    finally:
        _C.set_num_threads(saved)


@pytest.mark.parametrize("case", [FORWARD_CASES[0], FORWARD_CASES[2], FORWARD_CASES[4]])
def test_direct_forward_nan_propagates(case):
    n, h, w, c, oc, k, pads = case
    x, wt, b, args, _ = _forward_case(3, n, h, w, c, oc, k, pads)
    x[0, h // 2, w // 2, 0] = np.nan
    y = _C.conv2d_forward(x, wt, b, *args)
    assert np.isnan(y[0, h // 2 - pads[0] if pads[0] == 0 else h // 2, w // 2 - pads[2] if pads[2] == 0 else w // 2]).all()
    finite = np.isfinite(y)
    ref = R.conv2d_forward(np.nan_to_num(x, nan=0.0).astype(np.float64), wt.astype(np.float64),
                           b.astype(np.float64), *args)
    _close(np.where(finite, y, 0).astype(np.float32), np.where(finite, ref, 0))


def _two_cpus():
    return len(os.sched_getaffinity(0)) >= 2


@pytest.fixture
def two_threads():
    saved = _C.get_num_threads()
    _C.set_num_threads(2)
    yield
    _C.set_num_threads(saved)


@pytest.mark.skipif(not _two_cpus(), reason="needs 2 CPUs")
@pytest.mark.parametrize("n, team", [(3 * (1 << 15) + 7, False), ((1 << 18) + 3, True)])
def test_sgd_threads_follow_team_grain(two_threads, n, team):
    """SGD with momentum: one thread below 2^18 elements, the team above; the same bits as
    one thread either way (elementwise)."""
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    v0 = rng.standard_normal(n).astype(np.float32)
    w2, v2 = w0.copy(), v0.copy()
    with threads_used() as used:
        _C.sgd_update(w2, g, v2, 0.01, 0.9, False, 0.0)
    assert (used.count > 1) == team, used.count
    w1, v1 = w0.copy(), v0.copy()
    _C.set_num_threads(1)
    _C.sgd_update(w1, g, v1, 0.01, 0.9, False, 0.0)
    np.testing.assert_array_equal(w2, w1)
    np.testing.assert_array_equal(v2, v1)
    ref_v = 0.9 * v0.astype(np.float64) - 0.01 * g.astype(np.float64)
    _close(v1, ref_v)
    _close(w1, w0.astype(np.float64) + ref_v)


@pytest.mark.skipif(not _two_cpus(), reason="needs 2 CPUs")
@pytest.mark.parametrize("n", [1, 8, 16, 33])
def test_lenet_pools_two_threads_same_bits(two_threads, n):
    """LeNet-5's average pools (28x28x6 -> 14x14x6, 10x10x16 -> 5x5x16), forward and
    backward, at batch sizes either side of the thread grain: the oracle, and the same bits
    on one thread and on two; NaN in one input pixel reaches its pooled output."""
    rng = np.random.default_rng(n)
    for shape in ((n, 28, 28, 6), (n, 10, 10, 16)):
        x = rng.standard_normal(shape).astype(np.float32)
        x[0, 1, 1, 0] = np.nan
        geo = ((2, 2), (2, 2), (0, 0, 0, 0))
        y2 = _C.avg_pool2d_forward(x, *geo)
        dy = rng.standard_normal(y2.shape).astype(np.float32)
        dx2 = _C.avg_pool2d_backward(dy, x.shape, *geo)
        _C.set_num_threads(1)
        y1 = _C.avg_pool2d_forward(x, *geo)
        dx1 = _C.avg_pool2d_backward(dy, x.shape, *geo)
        _C.set_num_threads(2)
        np.testing.assert_array_equal(y2, y1)
        np.testing.assert_array_equal(dx2, dx1)
        assert np.isnan(y1[0, 0, 0, 0]) and np.isfinite(np.delete(y1.ravel(), 0)).all()
        _close(np.nan_to_num(y1, nan=0.0),
               np.nan_to_num(R.avg_pool2d_forward(x.astype(np.float64), *geo), nan=0.0))
        _close(dx1, R.avg_pool2d_backward(dy.astype(np.float64), x.shape, *geo))


@pytest.mark.skipif(not _two_cpus(), reason="needs 2 CPUs")
@pytest.mark.parametrize("n, k, m", [(64, 400, 120), (256, 400, 120), (7, 33, 5)])
def test_dense_threads(two_threads, n, k, m):
    """LeNet-5's first dense layer at b64 (3.1 M multiply-adds) and b256 (12 M), both over
    the GEMM's 2^21 team bound, and a small one under it, forward and backward, against the
    oracle."""
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    y = _C.dense_forward(x, w, b)
    _close(y, x.astype(np.float64) @ w.astype(np.float64) + b)
    dx, dw, db = _C.dense_backward(dy, x, w)
    _close(dx, dy.astype(np.float64) @ w.astype(np.float64).T)
    _close(dw, x.astype(np.float64).T @ dy.astype(np.float64))
    _close(db, dy.astype(np.float64).sum(0))
