"""Forward conv products in avx2 register tiles (csrc/cpu/pointwise_avx2.cpp).

Below AVX-512 (the avx2 level) conv2d_forward's GEMM products (the pointwise convs, im2col's
chunks, the batch-1 Cout split) with K <= 64 whose weights pack into 64 KiB run as 6-row x 16-column
register tiles with the bias, the residual (set in y first) and relu / relu6 folded in; larger
ones and other activations keep OpenBLAS's sgemm. At the other levels these cases take the
sgemm or the native GEMM: the same checks hold there. Each case against the float64 oracle
(reference.conv2d_forward, + residual, then the activation): rtol 1e-5 and atol 1e-5 times the
output's magnitude. Shapes: column tails 1..15 past a 16-wide panel, rows not a multiple of the
6-row tile (1..5 left), odd K, batch 1..3, MobileNet's and ResNet-50's batch-1 pointwise convs
scaled down, the K and 64 KiB edges on both sides, grouped convs (col and W read at a stride), 1 and 2
threads. NaN and inf in x reach exactly their own pixel's outputs.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

ACTS = {
    "linear": lambda v: v,
    "relu": lambda v: np.maximum(v, 0.0),
    "relu6": lambda v: np.clip(v, 0.0, 6.0),
    "tanh": np.tanh,  # not a register activation: the sgemm route, checked all the same
}

# (n, h, w, cin, cout)
POINTWISE = [
    (1, 28, 28, 32, 64),    # conv_pw_1 at a quarter of the pixels
    (1, 14, 14, 64, 128),   # conv_pw_2
    (1, 7, 7, 128, 256),    # conv_pw_4
    (1, 5, 7, 64, 250),     # 64 KiB of weights (K = 64), a 10-column tail panel: the last size
    (1, 5, 7, 64, 257),     # just past it: the sgemm
    (1, 5, 5, 65, 128),     # K = 65: the sgemm
    (1, 5, 5, 128, 128),
    (1, 9, 7, 64, 256),     # ResNet-50's expansion
    (1, 9, 7, 256, 64),     # and its reduction
    (1, 1, 1, 32, 64),      # one row
    (1, 1, 5, 17, 33),      # 5 rows: only the remainder tile
    (1, 7, 1, 19, 37),      # 7 rows: one tile + 1, 5 columns past 2 panels
    (2, 3, 5, 3, 1),        # one column
    (3, 4, 5, 33, 15),      # 15 columns (both halves masked), batch 3
    (1, 11, 13, 48, 8),     # 8 columns
    (1, 13, 3, 7, 9),       # 9 columns
    (2, 6, 7, 40, 112),
]


def _data(n, h, w, cin, cout, kh=1, kw=1, groups=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = (rng.standard_normal((kh, kw, cin // groups, cout)) / np.sqrt(kh * kw * cin / groups)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return rng, x, wt, b


def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


def _reference(x, wt, b, args, act, residual=None):
    y = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None if b is None else b.astype(np.float64),
                         *args)
    if residual is not None:
        y = y + residual.astype(np.float64)
    return ACTS[act](y)


@pytest.fixture
def threads():
    saved = fastconv.get_num_threads()
    yield fastconv.set_num_threads
    fastconv.set_num_threads(saved)
    fastconv.set_conv_algorithm("auto")


@pytest.mark.parametrize("shape", POINTWISE, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("nt", [1, 2])
def test_pointwise_forward(shape, act, nt, threads):
    threads(nt)
    _, x, wt, b = _data(*shape)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    _close(_C.conv2d_forward(x, wt, b, *args, act), _reference(x, wt, b, args, act))


@pytest.mark.parametrize("shape", POINTWISE[:8], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("act", ["linear", "relu", "relu6"])
def test_pointwise_no_bias_and_residual(shape, act):
    rng, x, wt, b = _data(*shape, seed=3)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    _close(_C.conv2d_forward(x, wt, None, *args, act), _reference(x, wt, None, args, act))
    n, h, w, _, cout = shape
    residual = (rng.standard_normal((n, h, w, cout)) * 2).astype(np.float32)
    _close(_C.conv2d_forward(x, wt, b, *args, act, residual), _reference(x, wt, b, args, act, residual))
    _close(_C.conv2d_forward(x, wt, None, *args, act, residual), _reference(x, wt, None, args, act, residual))


# (n, h, w, cin, cout, (kh, kw), strides, pads, groups): im2col's chunks and the Cout split
IM2COL = [
    (1, 9, 11, 5, 33, (3, 3), (1, 1), (1, 1, 1, 1), 1),
    (2, 8, 7, 16, 40, (3, 3), (2, 2), (0, 1, 0, 1), 1),
    (1, 12, 10, 3, 24, (5, 5), (2, 2), (2, 2, 2, 2), 1),
    (1, 6, 6, 64, 48, (3, 3), (1, 1), (1, 1, 1, 1), 1),
    (1, 6, 7, 24, 36, (3, 3), (1, 1), (1, 1, 1, 1), 2),  # grouped: col and W at a stride
    (2, 5, 5, 16, 32, (1, 1), (1, 1), (0, 0, 0, 0), 4),
]


@pytest.mark.parametrize("case", IM2COL, ids=lambda c: "x".join(map(str, c[:5])) + f"k{c[5][0]}s{c[6][0]}g{c[8]}")
@pytest.mark.parametrize("act", ["linear", "relu6"])
@pytest.mark.parametrize("nt", [1, 2])
def test_im2col_forward(case, act, nt, threads):
    n, h, w, cin, cout, k, strides, pads, groups = case
    threads(nt)
    fastconv.set_conv_algorithm("im2col")
    rng, x, wt, b = _data(n, h, w, cin, cout, k[0], k[1], groups, seed=5)
    args = (strides, pads, (1, 1), groups)
    ref = _reference(x, wt, b, args, act)
    _close(_C.conv2d_forward(x, wt, b, *args, act), ref)
    residual = rng.standard_normal(ref.shape).astype(np.float32)
    _close(_C.conv2d_forward(x, wt, b, *args, act, residual), _reference(x, wt, b, args, act, residual))


@pytest.mark.parametrize("shape", [(1, 7, 5, 32, 64), (1, 3, 3, 19, 37), (2, 5, 4, 64, 128)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("act", ["linear", "relu", "relu6"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_reach_their_pixel_only(shape, act, bad):
    _, x, wt, b = _data(*shape, seed=7)
    n, h, w, cin, cout = shape
    x[n - 1, h // 2, w - 1, cin // 2] = bad
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    y = _C.conv2d_forward(x, wt, b, *args, act)
    hit = np.zeros(y.shape, bool)
    hit[n - 1, h // 2, w - 1, :] = True
    assert np.isfinite(y[~hit]).all()
    ref = _reference(np.where(np.isfinite(x), x, 0), wt, b, args, act)
    _close(np.where(hit, 0, y), np.where(hit, 0, ref))
    row = y[hit].reshape(-1)
    if np.isnan(bad):
        assert np.isnan(row).all()  # relu and relu6 keep NaN
    else:
        # inf * w: +-inf per column, as the sign of w; relu maps -inf to 0, relu6 +inf to 6
        expect = ACTS[act](bad * wt[0, 0, cin // 2, :].astype(np.float64))
        np.testing.assert_array_equal(row, expect.astype(np.float32))


def test_two_threads_match_one(threads):
    """Each output's sum runs in the same order whatever the rows or columns a thread takes."""
    _, x, wt, b = _data(1, 28, 28, 32, 64, seed=9)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    threads(1)
    one = _C.conv2d_forward(x, wt, b, *args, "relu6")
    threads(2)
    two = _C.conv2d_forward(x, wt, b, *args, "relu6")
    _close(two, one)
