"""conv2d_forward's residual epilogue: y = act(conv(x, w) + b + residual) in one kernel call.

The inference plan fuses a residual block's add (+ relu) into the conv that produces one of
its inputs (engine/inference.py). Every forward path of csrc/cpu/conv2d.cpp takes the
residual: the GEMM paths (pointwise, im2col, tap GEMMs, the Cout split) start each chunk of y
from bias + residual, the others (direct, Winograd, depthwise) add it after the conv. Each is
checked against the float64 oracle (reference.conv2d_forward + residual, then the
activation), rtol 1e-4 and atol 1e-5 times the output's magnitude, with odd shapes and
batch 1; NaN in the residual reaches exactly its own output; bad residuals are clear errors.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

# name: (n, h, w, cin, cout, (kh, kw), strides, (top, bottom, left, right), groups, algorithm, threads)
CASES = {
    "pointwise_odd": (1, 7, 5, 19, 37, (1, 1), (1, 1), (0, 0, 0, 0), 1, "auto", 1),
    "pointwise_batch3": (3, 6, 6, 64, 96, (1, 1), (1, 1), (0, 0, 0, 0), 1, "auto", 1),
    "im2col_3x3": (2, 7, 9, 5, 33, (3, 3), (1, 1), (1, 1, 1, 1), 1, "im2col", 1),
    "winograd_3x3": (1, 12, 12, 16, 24, (3, 3), (1, 1), (1, 1, 1, 1), 1, "winograd", 1),
    "direct_few_channels": (2, 9, 8, 3, 16, (3, 3), (1, 1), (1, 1, 1, 1), 1, "direct", 1),
    "tap_gemm_strided": (1, 9, 11, 32, 40, (3, 3), (2, 2), (0, 1, 0, 1), 1, "auto", 1),
    "strided_1x1_large_weights": (1, 7, 7, 512, 288, (1, 1), (2, 2), (0, 0, 0, 0), 1, "auto", 1),
    "cout_split_two_threads": (1, 4, 4, 128, 160, (3, 3), (1, 1), (1, 1, 1, 1), 1, "im2col", 2),
    "grouped": (2, 6, 5, 8, 12, (3, 3), (1, 1), (1, 1, 1, 1), 4, "auto", 1),
    "depthwise": (1, 9, 7, 6, 6, (3, 3), (2, 1), (1, 1, 1, 1), 6, "auto", 1),
}
ACTIVATIONS = {
    "linear": lambda v: v,
    "relu": lambda v: np.maximum(v, 0.0),
    "relu6": lambda v: np.clip(v, 0.0, 6.0),
}


@pytest.fixture
def setting():
    """Applies (algorithm, threads) for one test and restores the defaults after it."""
    threads = fastconv.get_num_threads()

    def apply(algorithm, n):
        fastconv.set_conv_algorithm(algorithm)
        fastconv.set_num_threads(n)
    yield apply
    fastconv.set_conv_algorithm("auto")
    fastconv.set_num_threads(threads)


def _case(name, seed=11):
    n, h, w, cin, cout, k, strides, pads, groups, algorithm, threads = CASES[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = (rng.standard_normal((k[0], k[1], cin // groups, cout)) * 0.3).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    args = (strides, pads, (1, 1), groups)
    oh = (h + pads[0] + pads[1] - k[0]) // strides[0] + 1
    ow = (w + pads[2] + pads[3] - k[1]) // strides[1] + 1
    residual = (rng.standard_normal((n, oh, ow, cout)) * 2).astype(np.float32)
    return x, wt, b, args, residual, (algorithm, threads)


def _oracle(x, wt, b, args, residual, activation):
    z = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None if b is None else b.astype(np.float64),
                         *args) + residual.astype(np.float64)
    return ACTIVATIONS[activation](z)


def _close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_residual_matches_the_oracle_on_every_path(name, activation, setting):
    x, wt, b, args, residual, (algorithm, threads) = _case(name)
    setting(algorithm, threads)
    before = residual.copy()
    y = _C.conv2d_forward(x, wt, b, *args, activation, residual)
    _close(y, _oracle(x, wt, b, args, residual, activation))
    np.testing.assert_array_equal(residual, before)  # only read
    # without a bias, and the same call without a residual is unchanged
    _close(_C.conv2d_forward(x, wt, None, *args, activation, residual), _oracle(x, wt, None, args, residual, activation))
    _close(_C.conv2d_forward(x, wt, b, *args, activation),
           _oracle(x, wt, b, args, np.zeros_like(residual), activation))


@pytest.mark.parametrize("name", ["pointwise_odd", "winograd_3x3", "tap_gemm_strided", "cout_split_two_threads",
                                  "depthwise"])
@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_nan_in_the_residual_reaches_only_its_own_output(name, activation, setting):
    x, wt, b, args, residual, (algorithm, threads) = _case(name)
    setting(algorithm, threads)
    residual[0, 1, 2, 3] = np.nan
    y = _C.conv2d_forward(x, wt, b, *args, activation, residual)
    assert np.isnan(y[0, 1, 2, 3])
    assert np.isnan(y).sum() == 1


@pytest.mark.parametrize("bad,exc,match", [
    (np.zeros((2, 6, 6, 7), np.float32), ValueError, r"residual must have shape \(2, 6, 6, 8\)"),
    (np.zeros((2, 6, 6, 8)), TypeError, "residual must have dtype float32"),
    (np.zeros((2, 6, 12, 8), np.float32)[:, :, ::2], TypeError, "residual must be C-contiguous"),
    (np.zeros((2, 6, 48), np.float32), ValueError, "residual must be 4-D"),
    ([[0.0]], TypeError, "residual must be a numpy.ndarray"),
])
def test_bad_residual_is_a_clear_error(bad, exc, match):
    x, w = np.zeros((2, 6, 6, 4), np.float32), np.zeros((3, 3, 4, 8), np.float32)
    with pytest.raises(exc, match=match):
        _C.conv2d_forward(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu", bad)
