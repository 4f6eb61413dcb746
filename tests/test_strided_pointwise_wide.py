"""Strided 1x1 convs with 33..64 channels each side: the forward and the backward data on
register tiles at the avx2 level (csrc/cpu/strided_pointwise_wide.cpp, stop 37; at AVX-512
and the baseline the GEMM paths run the same shapes, and these tests check those).

Against the float64 oracle (conv_oracle.close: rtol 1e-4, atol 1e-5 x the largest magnitude):
odd and even sizes, 'same' and 'valid', batch 1 and > 1, Cin != Cout, channel counts that
leave a masked last vector (33, 40, 57) and whole ones (48, 64), strides (2, 2), (3, 3),
(2, 1), (1, 2); bias, relu and a residual in the forward; tiles that cross output rows and
images (rows of 1..7 pixels); one and two threads bit-equal. The backward data writes every
pixel of dx (the tests' outputs start as NaN, conftest.py): the skipped columns and rows are
zeros. NaN and inf reach exactly the oracle's outputs, and never from a pixel the stride
skips.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from fastconv.functional._args import resolve_padding
from conv_oracle import close


def _operands(seed, n, hw, cin, cout, strides=(2, 2), padding="same", wd=None):
    wd = hw if wd is None else wd
    pads = resolve_padding(padding, (hw, wd), (1, 1), strides, (1, 1))
    args = (strides, pads, (1, 1), 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, hw, wd, cin)).astype(np.float32)
    w = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return rng, x, w, b, args


def _with_threads(threads, f):
    saved = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        return f()
    finally:
        _C.set_num_threads(saved)


def _oracle_forward(x, w, b, args):
    return R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), *args)


def _oracle_backward_data(dy, w, x_shape, args):
    return R.conv2d_backward_data(dy.astype(np.float64), w.astype(np.float64), x_shape, *args)


# (n, h, w, cin, cout, strides, padding)
SHAPES = {
    "c48_14x14": (3, 14, 14, 48, 48, (2, 2), "same"),      # rows of 7 pixels: tiles cross rows
    "c64_7x7": (4, 7, 7, 64, 64, (2, 2), "same"),          # rows of 4, odd H and W
    "c33_c64_odd": (2, 13, 13, 33, 64, (2, 2), "valid"),   # Cin 33: a masked last dx vector
    "c64_c33": (2, 12, 12, 64, 33, (2, 2), "same"),        # a masked last output vector
    "c40_c57": (1, 27, 27, 40, 57, (2, 2), "same"),        # batch 1, rows of 14
    "c48_batch1_28x28": (1, 28, 28, 48, 48, (2, 2), "same"),
    "c56_tall": (2, 9, 15, 56, 48, (2, 2), "same"),        # H != W
    "c48_stride3": (2, 11, 11, 48, 48, (3, 3), "valid"),   # two skipped columns and rows
    "c48_stride2x1": (2, 8, 9, 48, 48, (2, 1), "same"),    # no skipped columns
    "c48_stride1x2": (2, 8, 9, 48, 48, (1, 2), "same"),    # no skipped rows
    "c64_one_pixel": (1, 1, 1, 64, 64, (2, 2), "valid"),   # a tile of one pixel
    "c48_2x2": (3, 2, 2, 48, 48, (2, 2), "same"),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_forward_matches_oracle(name):
    n, h, wd, cin, cout, strides, padding = SHAPES[name]
    rng, x, w, b, args = _operands(11, n, h, cin, cout, strides, padding, wd)
    ref = _oracle_forward(x, w, b, args)
    close(_C.conv2d_forward(x, w, b, *args), ref)
    close(_C.conv2d_forward(x, w, None, *args), _oracle_forward(x, w, np.zeros_like(b), args))
    close(_C.conv2d_forward(x, w, b, *args, "relu"), np.maximum(ref, 0.0))
    residual = rng.standard_normal(ref.shape).astype(np.float32)
    close(_C.conv2d_forward(x, w, b, *args, "relu", residual), np.maximum(ref + residual, 0.0))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_backward_data_matches_oracle(name):
    n, h, wd, cin, cout, strides, padding = SHAPES[name]
    rng, x, w, b, args = _operands(12, n, h, cin, cout, strides, padding, wd)
    oh, ow = _C.conv2d_forward(x[:1], w, b, *args).shape[1:3]
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    dx = _C.conv2d_backward_data(dy, w, x.shape, *args)
    ref = _oracle_backward_data(dy, w, x.shape, args)
    close(dx, ref)
    # the pixels off the stride grid are exact zeros, not NaN (conftest poisons the output)
    sh, sw = strides
    off = np.ones(x.shape[:3], bool)
    off[:, ::sh, ::sw] = False
    assert np.all(dx[off] == 0.0)


# The forward also takes 25..32 channels, and 17..24 with >= 8 MiB of x (n, h, cin, cout)
FORWARD_NARROWER = {
    "c32_14x14": (3, 14, 32, 32),
    "c25_c30_odd": (2, 13, 25, 30),
    "c28_batch1": (1, 27, 28, 28),
    "c24_large_x": (112, 28, 24, 24),      # 8.4 MB of x
    "c17_c20_large_x": (170, 29, 17, 20),  # 9.7 MB, odd size
    "c20_small_x": (4, 15, 20, 20),        # the per-pixel map (below 8 MiB)
}


@pytest.mark.parametrize("name", sorted(FORWARD_NARROWER))
def test_forward_from_17_channels_matches_oracle(name):
    n, hw, cin, cout = FORWARD_NARROWER[name]
    rng, x, w, b, args = _operands(17, n, hw, cin, cout)
    ref = _oracle_forward(x, w, b, args)
    close(_C.conv2d_forward(x, w, b, *args, "relu"), np.maximum(ref, 0.0))
    x[0, 2, 2, 0] = np.nan  # read
    x[0, 3, 3, 0] = np.inf  # skipped
    y = _C.conv2d_forward(x, w, b, *args)
    assert np.isnan(y[0, 1, 1]).all() and np.isfinite(np.delete(y.reshape(-1, cout), (hw + 1) // 2 + 1, axis=0)).all()


# Large enough for two threads (the kernels run one thread under 2M multiply-adds)
THREADED = {
    "c48_28x28": (8, 28, 48, 48),
    "c64_14x14": (17, 15, 64, 64),
    "c40_56x56": (3, 56, 40, 40),
}


@pytest.mark.parametrize("name", sorted(THREADED))
def test_two_threads_bit_equal_to_one(name):
    n, hw, cin, cout = THREADED[name]
    rng, x, w, b, args = _operands(13, n, hw, cin, cout)
    y1 = _with_threads(1, lambda: _C.conv2d_forward(x, w, b, *args))
    y2 = _with_threads(2, lambda: _C.conv2d_forward(x, w, b, *args))
    np.testing.assert_array_equal(y1, y2)
    close(y1, _oracle_forward(x, w, b, args))
    dy = rng.standard_normal(y1.shape).astype(np.float32)
    d1 = _with_threads(1, lambda: _C.conv2d_backward_data(dy, w, x.shape, *args))
    d2 = _with_threads(2, lambda: _C.conv2d_backward_data(dy, w, x.shape, *args))
    np.testing.assert_array_equal(d1, d2)
    close(d1, _oracle_backward_data(dy, w, x.shape, args))


def _check_nonfinite(got, ref):
    bad = ~np.isfinite(ref)
    assert np.array_equal(~np.isfinite(got), bad)
    np.testing.assert_array_equal(got[bad], ref[bad].astype(np.float32))
    close(np.where(bad, 0, got).astype(np.float32), np.where(bad, 0, ref))
    return bad


@pytest.mark.parametrize("cin,cout", [(48, 48), (64, 40)])
def test_forward_nan_inf_reach_their_pixel_only(cin, cout):
    _, x, w, b, args = _operands(14, 5, 15, cin, cout)
    x[1, 4, 6, 3] = np.nan     # read (even row and column): output pixel (2, 3)
    x[2, 14, 0, cin - 1] = np.inf  # read: the last row's first pixel, the last channel
    x[3, 5, 5, 0] = np.nan     # odd row: skipped
    x[3, 4, 7, 1] = np.inf     # odd column: skipped
    x[4, 14, 13, 2] = np.nan   # odd column of the last row: skipped
    ref = _oracle_forward(x, w, b, args)
    bad = _check_nonfinite(_C.conv2d_forward(x, w, b, *args), ref)
    assert bad[1, 2, 3].all() and bad[2, 7, 0].all() and bad.sum() == 2 * cout
    assert not bad[3].any() and not bad[4].any()


@pytest.mark.parametrize("cin,cout", [(48, 48), (40, 64)])
def test_backward_data_nan_inf_reach_their_pixel_only(cin, cout):
    rng, x, w, b, args = _operands(15, 4, 13, cin, cout)
    dy = rng.standard_normal((4, 7, 7, cout)).astype(np.float32)
    dy[0, 0, 0, 5] = np.nan
    dy[1, 6, 6, cout - 1] = np.inf  # the last pixel of an image: its trailing zeros stay zero
    dy[2, 3, 6, 0] = -np.inf        # a row's last pixel
    ref = _oracle_backward_data(dy, w, x.shape, args)
    bad = _check_nonfinite(_C.conv2d_backward_data(dy, w, x.shape, *args), ref)
    assert bad[0, 0, 0].all() and bad[1, 12, 12].all() and bad[2, 6, 12].all()
    assert bad.sum() == 3 * cin


def test_fastconv_functional_gradients_match_oracle():
    # The public API on a sweep shape scaled down (N=256 14x14 C=48 -> N=6)
    import fastconv.functional as F
    rng, x, w, b, args = _operands(16, 6, 14, 48, 48)
    y = F.conv2d(x, w, b, strides=2, padding="same")
    close(y, _oracle_forward(x, w, b, args))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = F.conv2d_backward(dy, x, w, strides=2, padding="same")
    close(dx, _oracle_backward_data(dy, w, x.shape, args))
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), w.shape, *args, True)
    close(dw, rdw)
    close(db, rdb)
