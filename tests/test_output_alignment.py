"""Kernel outputs of at least 4 KiB start on a 64-byte line (bindings/array_check.h empty_f32):
the kernels' 64-byte vector stores then write whole lines. The arrays are ordinary writeable
numpy arrays whose memory is freed with them; smaller outputs keep numpy's own allocation."""
import gc
import os

import numpy as np

from fastconv import _C
from fastconv import reference as R


def test_large_outputs_are_line_aligned_and_correct():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 9, 7, 19)).astype(np.float32)
    w = rng.standard_normal((1, 1, 19, 37)).astype(np.float32)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    ys = [_C.conv2d_forward(x, w, None, *args) for _ in range(5)]  # 2*9*7*37 floats = 18 KiB
    ref = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, *args)
    for y in ys:
        assert y.ctypes.data % 64 == 0
        assert y.flags.writeable and y.flags.c_contiguous and y.dtype == np.float32
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    y = ys[0]
    y += 1.0  # an ordinary array: in-place arithmetic, views, copies
    np.testing.assert_allclose(y[1, :, :, 3], ref[1, :, :, 3] + 1.0, rtol=1e-5, atol=1e-5)
    other = _C.add_act_forward(y, ys[1], "relu")
    assert other.ctypes.data % 64 == 0
    np.testing.assert_allclose(other, np.maximum(y + ys[1], 0), rtol=1e-6)


def test_small_outputs_and_release():
    x = np.ones((1, 2, 2, 3), np.float32)
    w = np.ones((1, 1, 3, 4), np.float32)
    y = _C.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    np.testing.assert_array_equal(y, np.full((1, 2, 2, 4), 3.0, np.float32))
    # Many large outputs created and dropped: each block goes back with its array, so the
    # resident size does not grow by their sum (300 x 1 MiB leaked would be 300 MiB).
    big = np.ones((1, 64, 64, 64), np.float32)
    wb = np.eye(64, dtype=np.float32).reshape(1, 1, 64, 64)
    gc.collect()
    before = _resident_bytes()
    for _ in range(300):
        out = _C.conv2d_forward(big, wb, None, (1, 1), (0, 0, 0, 0), (1, 1), 1)
        out[0, 0, 0, 1] = 2.0  # touch it: pages count once written
        assert out[0, 0, 0, 0] == 1.0
        del out
    gc.collect()
    if before is not None:
        assert _resident_bytes() - before < 64 << 20


def _resident_bytes():
    """The process's resident set size (Linux /proc), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
