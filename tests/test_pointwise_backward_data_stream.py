"""Backward data of a stride-1 1x1 conv whose dx is past the cache (conv2d.cpp, stop 36): with
the native GEMM, >= 256 channels on either side and dx over the stream threshold, dx is made in
blocks of 140 rows (W^T packed once), each product written to a scratch and streamed out.

The threshold is lowered here (_C.set_stream_threshold) so that small shapes take that path;
each result against the float64 oracle (conv_oracle.close) with odd and even sizes, 'same' and
'valid' (no pads for a 1x1), batch 1 and > 1, row counts that leave a short last block, 1 and 2
threads, against the same call at the default threshold, and with NaN and inf in dy.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from conv_oracle import close

ARGS = ((1, 1), (0, 0, 0, 0), (1, 1), 1)


def _run(dy, w, x_shape, threshold, threads):
    saved = _C.get_stream_threshold(), _C.get_num_threads()
    _C.set_stream_threshold(threshold)
    _C.set_num_threads(threads)
    try:
        return _C.conv2d_backward_data(dy, w, x_shape, *ARGS)
    finally:
        _C.set_stream_threshold(saved[0])
        _C.set_num_threads(saved[1])


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
