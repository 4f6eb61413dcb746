"""Stop 33 (issue 18 item 3, helper Y) paths against the float64 NumPy oracle:

- conv2d.cpp's im2col backward data with W^T packed once for all chunks (the native GEMM,
  groups == 1, more than one chunk, serial products): chunks forced by the smallest workspace
  cap, 3x3 stride 1 and 2, 'same' and 'valid' pads, odd and even sizes, batch 1 and 3, channel
  counts off the GEMM's 32-column strips, one and two threads, NaN in dy;
- the Winograd rule that sends a backward data over few tiles with a transformed filter past
  24 MB to im2col (the routing query only: the case itself is 925 MFLOP);
- narrow_pointwise_flat.h's 3 -> 3 and 6 -> 6 maps at stride 1 (AVX-512; the other levels run
  the planar or per-pixel maps, which must agree too) and its 3-channel pixel pairs of the
  strided backward data: streams of several 1024-pixel runs and a tail of
  fewer than 16 pixels, batch 1 and 2, NaN/inf reaching exactly their own pixel or channel.

- stop 34: weight_rows_product (backward data with at most 16 output positions and >= 64 K
  floats of weights: dcol from W in place): 3x3 stride 1 and 2, 1x1 stride 2, 'same' and
  'valid', odd and even sizes, 1..16 positions (batch 1 and 2), Cout a multiple of 16 and
  not (the GEMM then), one and two threads, NaN in dy reaching exactly its window.

Tolerance: conv_oracle.close (rtol 1e-4, atol 1e-5 times the output's magnitude)."""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from conv_oracle import check_conv_passes, close


@pytest.fixture
def im2col_tiny_workspace():
    old_limit, old_algo = _C.get_workspace_limit(), _C.get_conv_algorithm()
    _C.set_workspace_limit(65536)  # a 3x3 line of 9 x 333 floats: a few lines per chunk
    _C.set_conv_algorithm("im2col")
    yield
    _C.set_workspace_limit(old_limit)
    _C.set_conv_algorithm(old_algo)


def _backward_data(seed, n, h, w, cin, cout, stride, pads):
    rng = np.random.default_rng(seed)
    wt = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    x_shape = (n, h, w, cin)
    args = ((stride, stride), pads, (1, 1), 1)
    oh = (h + pads[0] + pads[1] - 3) // stride + 1
    ow = (w + pads[2] + pads[3] - 3) // stride + 1
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    return dy, wt, x_shape, args


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (0, 0, 0, 0), (0, 1, 0, 1)])
@pytest.mark.parametrize("n, h, w", [(1, 13, 11), (3, 10, 14)])
def test_packed_weights_backward_data(im2col_tiny_workspace, stride, pads, n, h, w):
    dy, wt, x_shape, args = _backward_data(n * 100 + h + stride, n, h, w, 37, 45, stride, pads)
    got = _C.conv2d_backward_data(dy, wt, x_shape, *args)
    close(got, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args))


def test_packed_weights_two_threads_and_nan(im2col_tiny_workspace):
    """Two threads, a thread per image (each packs nothing: the weights are packed once before
    the team); equal to one thread with the native GEMM. A NaN in dy reaches exactly the dx pixels of its window."""
    dy, wt, x_shape, args = _backward_data(5, 3, 12, 9, 37, 45, 1, (1, 1, 1, 1))
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        two = _C.conv2d_backward_data(dy, wt, x_shape, *args)
        _C.set_num_threads(1)
        one = _C.conv2d_backward_data(dy, wt, x_shape, *args)
    finally:
        _C.set_num_threads(old)
    if _C.active_gemm_backend() == "native":  # OpenBLAS may pick other kernels in a team
        np.testing.assert_array_equal(two, one)
    close(two, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args))
    close(one, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args))
    dy[1, 4, 6, 7] = np.nan
    got = _C.conv2d_backward_data(dy, wt, x_shape, *args)
    bad = ~np.isfinite(got)
    assert bad[1, 3:6, 5:8].all() and bad.sum() == 9 * 37


def test_winograd_backward_data_few_tiles_large_filter_routes_to_im2col():
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    big = _C.conv_algorithm((1, 14, 14, 512), (3, 3, 512, 512), *args)
    small = _C.conv_algorithm((1, 14, 14, 256), (3, 3, 256, 256), *args)
    assert big["backward_data"] == "im2col" and big["forward"] == "winograd", big
    assert small["backward_data"] == "winograd", small  # 36 x 256 x 256 floats: 9.4 MB


def _pointwise(seed, n, h, w, c):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((1, 1, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    return rng, x, wt, b


@pytest.mark.parametrize("c", [3, 6])
@pytest.mark.parametrize("n, h, w", [(1, 1, 16), (1, 3, 17), (2, 37, 41), (1, 45, 46)])
def test_flat_map(c, n, h, w):
    """3034 pixels at (2, 37, 41): two full 1024-pixel runs, a partial one, a 10-pixel tail."""
    rng, x, wt, b = _pointwise(n * 1000 + h * 10 + w + c, n, h, w, c)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    check_conv_passes(rng, x, wt, b, args)
    check_conv_passes(rng, x, wt, None, args)
    assert _C.conv_algorithm(x.shape, wt.shape, *args)["forward"] == "direct"


@pytest.mark.parametrize("c", [3, 6])
def test_flat_map_nan_inf_stay_in_their_pixel(c):
    rng, x, wt, b = _pointwise(60 + c, 2, 9, 23, c)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    x[1, 4, 5, c - 1] = np.nan  # pixel 9 * 23 + 4 * 23 + 5 of the stream: inside a register
    x[0, 8, 22, 0] = np.inf  # the last pixel of image 0
    y = _C.conv2d_forward(x, wt, b, *args)
    bad = ~np.isfinite(y)
    assert bad[1, 4, 5].all() and bad[0, 8, 22].all() and bad.sum() == 2 * c
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy[0, 2, 7, c - 1] = -np.inf
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    bad = ~np.isfinite(dx)
    assert bad[0, 2, 7].all() and bad.sum() == c
    x[...] = rng.standard_normal(x.shape)
    wt[0, 0, 2, c - 2] = np.inf  # input channel 2 -> output channel c - 2 only
    y = _C.conv2d_forward(x, wt, b, *args)
    assert (~np.isfinite(y[..., c - 2])).all() and np.isfinite(np.delete(y, c - 2, axis=3)).all()


@pytest.mark.parametrize("n, h, w", [(1, 5, 2), (3, 6, 14), (2, 9, 28), (1, 60, 80), (2, 61, 34)])
def test_strided_pair_map_three_channels(n, h, w):
    """1x1 stride-2 backward data at C = 3 with W = 2 OW: dy rows onto dx rows of pixel pairs
    (narrow_pointwise_flat.h map<3, 6>, AVX-512), items of whole dy rows (60x80: 25 rows of 40
    pixels an item, two items an image; odd heights end on a row off the grid)."""
    rng, x, wt, b = _pointwise(n * 100 + h + w, n, h, w, 3)
    args = ((2, 2), (0, 0, 0, 0), (1, 1), 1)
    check_conv_passes(rng, x, wt, b, args)
    dy = rng.standard_normal((n, (h + 1) // 2, w // 2, 3)).astype(np.float32)
    dy[n - 1, (h - 1) // 2, w // 2 - 1, 1] = np.nan  # the last pixel: in a masked tail
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    bad = ~np.isfinite(dx)
    assert bad[n - 1, 2 * ((h - 1) // 2), w - 2].all() and bad.sum() == 3
    assert (dx[:, 1::2] == 0).all() and (dx[:, :, 1::2] == 0).all()
    wt[0, 0, 1, 2] = np.inf  # dx channel 1 from dy channel 2: inf or NaN there, zeros stay 0
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    assert (~np.isfinite(dx[:, ::2, ::2, 1])).all()
    assert np.isfinite(dx[:, ::2, ::2, 0::2][np.isfinite(dy).all(axis=3)]).all()
    assert (dx[:, 1::2] == 0).all() and (dx[:, :, 1::2] == 0).all()


def _rows_case(seed, k, stride, n, h, w, cin, cout, padding):
    rng = np.random.default_rng(seed)
    wt = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
    if padding == "same":
        oh, ow = -(-h // stride), -(-w // stride)
        ph, pw = max((oh - 1) * stride + k - h, 0), max((ow - 1) * stride + k - w, 0)
        pads = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    else:
        pads = (0, 0, 0, 0)
        oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    return dy, wt, (n, h, w, cin), ((stride, stride), pads, (1, 1), 1)


ROWS_CASES = [  # k, stride, n, h, w, cin, cout, padding: 16 or fewer output positions
    (3, 2, 1, 7, 7, 256, 256, "same"),    # 4x4 = 16 positions
    (3, 2, 1, 7, 7, 160, 512, "valid"),   # 3x3
    (3, 1, 1, 4, 5, 128, 144, "same"),    # 20 positions: the GEMM, as a check of the bound
    (3, 1, 1, 3, 5, 200, 96, "same"),     # 15 positions
    (3, 2, 2, 4, 4, 256, 256, "same"),    # 2 images of 2x2
    (1, 2, 1, 7, 7, 512, 512, "same"),
    (1, 2, 1, 1, 1, 256, 512, "valid"),   # one position
    (3, 2, 1, 7, 6, 256, 200, "same"),    # Cout not a multiple of 16: the GEMM
]


@pytest.mark.parametrize("case", ROWS_CASES)
def test_weight_rows_backward_data(case):
    dy, wt, x_shape, args = _rows_case(sum(case[:7]), *case)
    got = _C.conv2d_backward_data(dy, wt, x_shape, *args)
    want = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args)
    close(got, want)


def test_weight_rows_two_threads_and_nan():
    """Two threads split W's rows (disjoint dcol columns): bitwise one thread's result at
    AVX-512 (weight_rows_product), the oracle's everywhere. A NaN
    in dy reaches exactly the dx pixels of its window (the oracle's NaN pattern), inf in W
    its own input channel."""
    dy, wt, x_shape, args = _rows_case(9, 3, 2, 1, 7, 7, 512, 256, "same")
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(1)
        one = _C.conv2d_backward_data(dy, wt, x_shape, *args)
        _C.set_num_threads(2)
        two = _C.conv2d_backward_data(dy, wt, x_shape, *args)
    finally:
        _C.set_num_threads(old)
    if _C.isa_level() == "avx512":  # below, the BLAS GEMM may split the product differently
        np.testing.assert_array_equal(one, two)
    close(two, R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args))
    dy[0, 1, 2, 17] = np.nan
    got = _C.conv2d_backward_data(dy, wt, x_shape, *args)
    want = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args)
    assert np.isnan(got).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    dy[0, 1, 2, 17] = 1.0
    wt[1, 1, 5, 3] = np.inf
    got = _C.conv2d_backward_data(dy, wt, x_shape, *args)
    want = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x_shape, *args)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    assert not np.isfinite(got[..., 5]).all() and np.isfinite(np.delete(got, 5, axis=3)).all()
