"""The 3x3 stride-2 stem forward (csrc/cpu/stem_conv.cpp: 1..4 channels in, 32 out, no
dilation, pads 0..2 each side; AVX-512 and avx2, the baseline level takes the direct path) against the
float64 oracle (test_direct_conv._close: rtol 1e-4, atol 1e-5 of the largest value).

The kernel walks each output row in tiles of 8, 4, 2 and 1 interior pixels, and runs the
columns whose window reaches the left/right padding through a zero-padded copy of the
window; rows in the vertical padding read a row of zeros; large outputs (over the stream
threshold) go out by non-temporal stores. So the widths cover one output, every tail
length (interior widths 1..17), a long row; every pad on each side; C = 1..4; batch 1 (the
item team) and 3; 1 and 2 threads; the fused relu / relu6, a row pass for sigmoid; the
streamed stores (threshold 0); NaN and inf at corners, edges and inside landing where the
reference puts them; and MobileNet's 224x224x3 -> 32 stem itself."""
import itertools

import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

from test_direct_conv import _close

ACTS = {"linear": lambda z: z, "relu": lambda z: np.maximum(z, 0), "relu6": lambda z: np.minimum(np.maximum(z, 0), 6),
        "sigmoid": lambda z: 1 / (1 + np.exp(-z))}


def _forward_check(seed, n, h, w, c, pads, act="relu", bias=True, x=None):
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, 32)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32) if bias else None
    args = ((2, 2), pads, (1, 1), 1)
    assert _C.conv_algorithm(x.shape, wt.shape, *args)["forward"] == "direct"
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                           None if b is None else b.astype(np.float64), *args)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = ACTS[act](ref)
    got = _C.conv2d_forward(x, wt, b, *args, act)
    _close(got, ref)
    return got, ref


@pytest.mark.parametrize("w", [3, 4, 5, 6, 9, 12, 17, 19, 20, 25, 33, 35, 37, 101])
@pytest.mark.parametrize("c", [1, 2, 3, 4])
def test_widths_and_channels(w, c):
    _forward_check(w * 10 + c, 1 if w % 2 else 3, 7, w, c, (1, 1, 1, 1), bias=w % 3 != 0)


@pytest.mark.parametrize("pads", list(itertools.product((0, 1, 2), (0, 2), (0, 1, 2), (0, 1, 2))))
def test_every_pad(pads):
    _forward_check(sum(pads), 2, 9, 14, 3, pads, act="linear")


@pytest.mark.parametrize("act", sorted(ACTS))
def test_activations(act):
    _forward_check(3, 2, 11, 30, 3, (0, 1, 0, 1), act=act)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [1, 3])
def test_threads_and_streamed_stores(threads, n):
    """2 threads (batch 1: the item team), and the non-temporal stores forced by a zero
    stream threshold; the result is the same bits as the plain stores."""
    old_t, old_s = _C.get_num_threads(), _C.get_stream_threshold()
    try:
        _C.set_num_threads(threads)
        plain, _ = _forward_check(8, n, 45, 46, 3, (0, 1, 0, 1))
        _C.set_stream_threshold(0)
        streamed, _ = _forward_check(8, n, 45, 46, 3, (0, 1, 0, 1))
        assert np.array_equal(plain, streamed)
    finally:
        _C.set_num_threads(old_t)
        _C.set_stream_threshold(old_s)


@pytest.mark.parametrize("act", ["linear", "relu", "relu6"])
def test_nan_and_inf_propagate(act):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 13, 21, 3)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan      # top-left corner (left padding column)
    x[0, 12, 20, 2] = np.inf    # bottom-right corner
    x[1, 6, 0, 1] = -np.inf     # left edge
    x[1, 4, 9, 0] = np.nan      # interior
    x[1, 12, 14, 2] = np.inf    # bottom row, interior column
    got, ref = _forward_check(2, 2, 13, 21, 3, (1, 1, 1, 1), act=act, x=x)
    assert np.isnan(ref).any() and (act == "relu6" or np.isinf(ref).any())
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))


@pytest.mark.parametrize("n", [1, 2])
def test_mobilenet_stem(n):
    _forward_check(n, n, 224, 224, 3, (0, 1, 0, 1))
