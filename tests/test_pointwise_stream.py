"""Stride-1 1x1 convs whose output is past the cache (conv2d.cpp, stop 36), with the native
GEMM: products in blocks of 140 rows, each written to a scratch and streamed out.
- backward data with >= 256 channels on either side (W^T packed once);
- forward of several images that widens a shallow product (Cin <= 64, Cout >= 2 Cin), with
  bias, relu / relu6, a residual and the inference plan's packed weights.

The threshold is lowered here (_C.set_stream_threshold) so that small shapes take these paths;
each result against the float64 oracle (conv_oracle.close) with odd and even sizes, batch 1 and
> 1, row counts that leave a short last block, 1 and 2 threads, against the same call at the
default threshold (bit-equal for the forward: the same per-element sums), and with NaN and inf.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from conv_oracle import close

ARGS = ((1, 1), (0, 0, 0, 0), (1, 1), 1)


def _with(threshold, threads, fn):
    saved = _C.get_stream_threshold(), _C.get_num_threads()
    _C.set_stream_threshold(threshold)
    _C.set_num_threads(threads)
    try:
        return fn()
    finally:
        _C.set_stream_threshold(saved[0])
        _C.set_num_threads(saved[1])


def _run(dy, w, x_shape, threshold, threads):
    return _with(threshold, threads, lambda: _C.conv2d_backward_data(dy, w, x_shape, *ARGS))


def _oracle(dy, w, x_shape):
    return R.conv2d_backward_data(dy.astype(np.float64), w.astype(np.float64), x_shape, *ARGS)


# (n, h, w, cin, cout): dx rows n*h*w
CASES = {
    "256_to_64_odd": (3, 13, 11, 256, 64),     # 429 rows: 3 blocks + 9
    "64_to_256_even": (2, 14, 14, 64, 256),    # 392 rows
    "300_to_40_batch1": (1, 9, 17, 300, 40),   # 153 rows, odd channel counts
    "256_to_256_one_block": (1, 5, 7, 256, 256),  # 35 rows: one short block
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_streamed_backward_data_matches_oracle(name, threads):
    n, h, wd, cin, cout = CASES[name]
    rng = np.random.default_rng(7)
    x_shape = (n, h, wd, cin)
    w = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    dy = rng.standard_normal((n, h, wd, cout)).astype(np.float32)
    dx = _run(dy, w, x_shape, 1 << 12, threads)
    close(dx, _oracle(dy, w, x_shape))
    close(dx, _run(dy, w, x_shape, 1 << 40, threads).astype(np.float64))  # the unstreamed path


def test_streamed_backward_data_propagates_nan_and_inf():
    rng = np.random.default_rng(8)
    x_shape = (2, 9, 9, 256)
    w = rng.standard_normal((1, 1, 256, 48)).astype(np.float32)
    dy = rng.standard_normal((2, 9, 9, 48)).astype(np.float32)
    dy[0, 3, 4, 5] = np.nan
    dy[1, 8, 8, 47] = np.inf  # the last row of the last block
    dx = _run(dy, w, x_shape, 1 << 12, 1)
    ref = _oracle(dy, w, x_shape)
    bad = ~np.isfinite(ref)
    assert bad[0, 3, 4].all() and bad[1, 8, 8].all() and bad.sum() == 2 * 256
    assert np.array_equal(~np.isfinite(dx), bad)
    np.testing.assert_array_equal(dx[bad], ref[bad].astype(np.float32))
    close(np.where(bad, 0, dx).astype(np.float32), np.where(bad, 0, ref))


# (n, h, w, cin, cout)
FORWARD = {
    "64_to_256_odd": (3, 13, 11, 64, 256),   # 429 rows
    "32_to_64_even": (2, 14, 14, 32, 64),    # 392 rows
    "17_to_40": (2, 9, 17, 17, 40),          # 306 rows, odd channel counts
    "48_to_96_short": (2, 5, 7, 48, 96),     # 70 rows: one short block
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(FORWARD))
def test_streamed_forward_matches_oracle(name, threads):
    n, h, wd, cin, cout = FORWARD[name]
    rng = np.random.default_rng(9)
    x = rng.standard_normal((n, h, wd, cin)).astype(np.float32)
    w = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    residual = rng.standard_normal((n, h, wd, cout)).astype(np.float32)
    ref = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), *ARGS)
    for act, res, want in (("linear", None, ref), ("relu", residual, np.maximum(ref + residual, 0.0)),
                           ("relu6", None, np.clip(ref, 0.0, 6.0))):
        y = _with(1 << 12, threads, lambda: _C.conv2d_forward(x, w, b, *ARGS, act, res))
        close(y, want)
        assert np.array_equal(y, _with(1 << 40, threads, lambda: _C.conv2d_forward(x, w, b, *ARGS, act, res)))
    p = _C.conv2d_prepare(w, x.shape, *ARGS)
    if p is not None:  # the plan's packed weights (native GEMM)
        y = _with(1 << 12, threads, lambda: _C.conv2d_forward(x, w, b, *ARGS, "linear", None, p))
        close(y, ref)


def test_streamed_forward_propagates_nan_and_inf():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 9, 9, 32)).astype(np.float32)
    w = rng.standard_normal((1, 1, 32, 96)).astype(np.float32)
    x[0, 3, 4, 5] = np.nan
    x[1, 8, 8, 31] = np.inf  # the last row of the last block
    y = _with(1 << 12, 1, lambda: _C.conv2d_forward(x, w, None, *ARGS))
    ref = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, *ARGS)
    bad = ~np.isfinite(ref)
    assert bad[0, 3, 4].all() and bad[1, 8, 8].all() and bad.sum() == 2 * 96
    assert np.array_equal(~np.isfinite(y), bad)
    np.testing.assert_array_equal(y[bad], ref[bad].astype(np.float32))
    close(np.where(bad, 0, y).astype(np.float32), np.where(bad, 0, ref))
