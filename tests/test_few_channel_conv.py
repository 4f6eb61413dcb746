"""Few-channel convs (issue 18 item 3) against the float64 oracle: Cin and Cout in {1, 2, 3, 5,
16}, 1x1 and 3x3, stride 1 and 2, 'same' and 'valid', odd spatial sizes, batch 1 and 2, all
three passes, under the 'auto' algorithm (whatever path the dispatcher picks: the per-pixel map
of narrow_pointwise.cpp for the 1x1 ones, asserted; the direct kernel or the GEMM for 3x3). Also
NaN propagation through the 1x1 map and the division-free stride packing of direct_conv.cpp at
strides 2 and 3 with pads (the phase loop that replaced per-column divisions)."""
import itertools

import numpy as np
import pytest

from fastconv import _C
from fastconv import functional as F
from fastconv import reference as R
from conv_oracle import check_conv_passes, close as _close
from threads_used import conv_pass_threads

CHANNELS = (1, 2, 3, 5, 16)
PASSES = ("forward", "backward_data", "backward_weights")




def _check(seed, n, h, w, cin, cout, k, stride, padding, bias=True):
    pads = tuple(F.resolve_padding(padding, (h, w), (k, k), (stride, stride)))
    args = ((stride, stride), pads, (1, 1), 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    check_conv_passes(rng, x, wt, b, args)
    return _C.conv_algorithm(x.shape, wt.shape, *args)


@pytest.mark.parametrize("k, stride, padding", list(itertools.product((1, 3), (1, 2), ("same", "valid"))))
def test_every_channel_pair(k, stride, padding):
    """25 (Cin, Cout) pairs per geometry; odd sizes (9x7, 7x5) at batch 1 and 2."""
    for i, (cin, cout) in enumerate(itertools.product(CHANNELS, CHANNELS)):
        n, h, w = (1, 9, 7) if i % 2 else (2, 7, 5)
        algos = _check(i, n, h, w, cin, cout, k, stride, padding, bias=i % 3 != 0)
        if k == 1:  # the 1x1 map runs every pass (conv_algorithm names it with the direct family)
            assert all(algos[p] == "direct" for p in PASSES), (cin, cout, algos)


@pytest.mark.parametrize("cin, cout", [(1, 1), (3, 3), (16, 16), (2, 5)])
def test_pointwise_long_rows_and_tails(cin, cout):
    """Rows longer than the 4-pixel groups and the 16-pixel vector loops, with tails of every
    length, and a last pixel whose 16-lane load would pass the end of dy."""
    for w in (1, 3, 4, 17, 33, 70):
        for stride in (1, 2):
            _check(w + stride, 1, 3, w, cin, cout, 1, stride, "same")
    # stride 1: the weight pass cuts the pixel stream into runs (2048 pixels), here 765 pixels
    _check(7, 3, 15, 17, cin, cout, 1, 1, "valid")


def test_pointwise_threaded_matches_oracle():
    """Large enough to run on several threads (the weight pass's per-thread partials)."""
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        for stride in (1, 2):
            _check(5, 8, 56, 56, 3, 5, 1, stride, "same")
        rng = np.random.default_rng(1)
        x = rng.standard_normal((8, 56, 56, 3)).astype(np.float32)
        wt = rng.standard_normal((1, 1, 3, 5)).astype(np.float32)
        used = conv_pass_threads(x, wt, (1, 1), (0, 0, 0, 0), (1, 1), 1)
        assert all(v == 2 for v in used.values()), used
    finally:
        _C.set_num_threads(old)


def test_pointwise_relu_fused_forward():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 11, 3)).astype(np.float32)
    w = rng.standard_normal((1, 1, 3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y = F.conv2d(x, w, b, strides=2, padding="same", activation="relu")
    ref = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                           (2, 2), (0, 0, 0, 0), (1, 1), 1)
    _close(y, np.maximum(ref, 0.0))


@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_nan_propagates(stride):
    """A NaN in x reaches exactly the outputs of its pixel (every channel), and through dw every
    weight of its input channel; a NaN in dy reaches dx of its pixel."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((1, 1, 3, 5)).astype(np.float32)
    x[0, 2, 4, 1] = np.nan
    args = ((stride, stride), (0, 0, 0, 0), (1, 1), 1)
    y = _C.conv2d_forward(x, w, None, *args)
    oy, ox = 2 // stride, 4 // stride
    assert np.isnan(y[0, oy, ox]).all()
    assert np.isnan(y).sum() == 5
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dw, _ = _C.conv2d_backward_weights(dy, x, w.shape, *args, False)
    assert np.isnan(dw[0, 0, 1]).all() and np.isfinite(dw[0, 0, [0, 2]]).all()
    dy[0, oy, ox, 3] = np.nan
    dx = _C.conv2d_backward_data(dy, w, x.shape, *args)
    assert np.isnan(dx[0, 2, 4]).all() and np.isnan(dx).sum() == 3


@pytest.mark.parametrize("stride, pads", [(2, (1, 1, 1, 1)), (2, (0, 1, 0, 1)), (3, (2, 1, 1, 2))])
def test_strided_packing_with_pads(stride, pads):
    """The direct kernel's phase packing (every phase, shifted by the left pad) at 3x3."""
    rng = np.random.default_rng(stride)
    for cin, cout, w in ((1, 1, 23), (3, 6, 17), (2, 16, 9)):
        args = ((stride, stride), pads, (1, 1), 1)
        x = rng.standard_normal((2, 11, w, cin)).astype(np.float32)
        wt = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
        assert _C.conv_algorithm(x.shape, wt.shape, *args)["forward"] == "direct"
        ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *args)
        _close(_C.conv2d_forward(x, wt, None, *args), ref)
        dy = rng.standard_normal(ref.shape).astype(np.float32)
        dw, _ = _C.conv2d_backward_weights(dy, x, wt.shape, *args, False)
        rdw, _ = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), wt.shape,
                                           *args, False)
        _close(dw, rdw)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_wide_pointwise_map(stride):
    """1x1 convs with 17..32 channels on a side: the forward and backward-data maps of
    narrow_pointwise.cpp (two 16-lane vectors per pixel) against the oracle, odd sizes, batch 1
    and 2, stride 3 > the kernel (the weight pass takes the map up to 16 channels)."""
    pairs = ((24, 24), (32, 32), (17, 5), (3, 29), (20, 16), (16, 31), (32, 1))
    for i, (cin, cout) in enumerate(pairs):
        n, h, w = (1, 9, 13) if i % 2 else (2, 7, 11)
        for padding in ("same", "valid"):
            algos = _check(10 * i + stride, n, h, w, cin, cout, 1, stride, padding, bias=i % 3 != 2)
            assert algos["backward_data"] == "direct", (cin, cout, algos)
            # a strided forward takes the map up to 24 channels (32 at AVX-512, narrow_pointwise.cpp)
            if stride == 1 or max(cin, cout) <= 24:
                assert algos["forward"] == "direct", (cin, cout, algos)
            if max(cin, cout) <= 16:
                assert algos["backward_weights"] == "direct", (cin, cout, algos)


def test_wide_pointwise_long_rows():
    """Rows of every tail length past the 4-pixel groups, at 24 and 32 channels."""
    for w in (1, 3, 5, 18, 37):
        for stride in (1, 2):
            _check(w + stride, 1, 2, w, 24, 32, 1, stride, "same")
            _check(w + 7 * stride, 2, 3, w, 32, 24, 1, stride, "valid")


@pytest.mark.parametrize("stride", [1, 2])
def test_packing_every_channel_count(stride):
    """The direct kernel's packing at each compiled channel count (Cin 1..8 deinterleaved in
    one copy loop each, dy of Cout 1..8 streamed for the weight pass) and beyond (Cin 12, Cout
    9 and 24: the generic loops); rows longer than a vector, so the dy stream crosses blocks
    of 16 pixels mid-row; 3x3 'same' and 'valid', batch 1 and 2."""
    pairs = [(c, c) for c in range(1, 9)] + [(7, 4), (4, 9), (12, 5), (6, 24), (8, 3)]
    for i, (cin, cout) in enumerate(pairs):
        n, h, w = (1, 6, 37) if i % 2 else (2, 5, 19)
        for padding in ("same", "valid"):
            algos = _check(100 + 10 * i + stride, n, h, w, cin, cout, 3, stride, padding,
                           bias=i % 3 != 1)
            if cin <= 8 and cout % 16:
                assert all(algos[p] == "direct" for p in PASSES), (cin, cout, algos)
