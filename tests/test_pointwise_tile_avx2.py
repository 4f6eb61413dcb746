"""The one avx2 register-tile microkernel and panel packing (csrc/cpu/pointwise_tile_avx2.h, stop
38, helper U) behind both 1x1 callers: conv2d's stride-1 pointwise forward / backward data
(pointwise_passes_avx2.cpp: Cout % 16 == 0 forward, now with relu / relu6 in the tiles'
registers, Cin % 16 == 0 backward data, W^T packed by the strided branch of pack_panels) and
forward_product's small-K products (pointwise_avx2.cpp: masked tail panels, a residual read
from y). At the baseline and AVX-512 levels the GEMM paths run the same calls, and these tests
check those.

Against the float64 oracle (fastconv.reference): every element within 1e-5 of the largest
magnitude of the result (sums of <= 192 products of standard normals, ~1e-6 relative in float32).
Random shapes from fixed seeds: odd H and W, batch 1, pixel counts that leave 1..5-row tiles,
Cin / Cout around the panel width (16, 17, 31, 48, 80), the sweep's 28x28 256->64 and 56x56
64->64 scaled down. NaN in x reaches exactly that pixel's row through relu6 (max / min keep NaN).
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R

ONE, NO_PAD = (1, 1), (0, 0, 0, 0)
ARGS = (ONE, NO_PAD, ONE, 1)
ACTS = {"linear": lambda v: v, "relu": lambda v: np.maximum(v, 0), "relu6": lambda v: np.clip(v, 0, 6)}


def _check(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.nanmax(np.abs(ref))))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * scale)


def _fwd_oracle(x, wt, b, act, residual=None):
    y = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None if b is None else b.astype(np.float64),
                         *ARGS)
    if residual is not None:
        y = y + residual
    return ACTS[act](y)


def _shapes(seed, count):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(1, 4))
        h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        cin = int(rng.choice([1, 3, 16, 17, 31, 48, 64, 80, 192]))
        cout = int(rng.choice([16, 17, 31, 48, 64, 80, 96]))
        out.append((n, h, w, cin, cout))
    return out


SHAPES = _shapes(38, 24) + [(2, 14, 14, 256, 64), (1, 28, 28, 64, 64), (1, 7, 5, 32, 64), (3, 5, 7, 48, 96)]


@pytest.mark.parametrize("act", ["linear", "relu", "relu6"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_oracle(shape, act):
    n, h, w, cin, cout = shape
    rng = np.random.default_rng(hash(shape) % 2**32)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = (rng.standard_normal(cout) * 3).astype(np.float32)  # shifts some outputs past 6 and below 0
    _check(_C.conv2d_forward(x, wt, b, *ARGS, act), _fwd_oracle(x, wt, b, act))
    _check(_C.conv2d_forward(x, wt, None, *ARGS, act), _fwd_oracle(x, wt, None, act))


@pytest.mark.parametrize("shape", SHAPES[::3], ids=lambda s: "x".join(map(str, s)))
def test_forward_residual(shape):
    n, h, w, cin, cout = shape
    rng = np.random.default_rng(7 + cin * 1000 + cout)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    res = rng.standard_normal((n, h, w, cout)).astype(np.float32)
    _check(_C.conv2d_forward(x, wt, b, *ARGS, "relu", res), _fwd_oracle(x, wt, b, "relu", res))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backward_data_matches_oracle(shape):
    n, h, w, cin, cout = shape
    rng = np.random.default_rng(11 + cin * 1000 + cout)
    dy = rng.standard_normal((n, h, w, cout)).astype(np.float32)
    wt = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    ref = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), (n, h, w, cin), *ARGS)
    _check(_C.conv2d_backward_data(dy, wt, (n, h, w, cin), *ARGS), ref)


@pytest.mark.parametrize("cin,cout", [(64, 64), (32, 48), (17, 20), (256, 64)])
def test_forward_nan_reaches_its_pixel_only_through_relu6(cin, cout):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 5, 7, cin)).astype(np.float32)
    wt = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    x[0, 2, 3, cin // 2] = np.nan
    got = _C.conv2d_forward(x, wt, b, *ARGS, "relu6")
    assert np.isnan(got[0, 2, 3]).all()
    mask = np.ones(got.shape[:3], bool)
    mask[0, 2, 3] = False
    assert np.isfinite(got[mask]).all()
    ref = _fwd_oracle(x, wt, b, "relu6")
    _check(got[mask], ref[mask])
