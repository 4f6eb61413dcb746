"""Where the forward of a strided 1x1 conv runs (helper W2, stop 35: benchmarks/RESULTS.md).

Two routing rules, each checked against the float64 oracle (conv_oracle.close) on both sides
of its boundary, and by bit-equality with the 'im2col' setting where the rule must send the
call to the im2col GEMM (the same code on the same operands: any other path rounds
differently, so a call that kept the map or the tap GEMMs fails the equality):
- narrow_pointwise_shape: 29..32 channels each side, output rows of <= 14 pixels and >= 4 MiB
  of y leave the per-pixel map (AVX-512) for the GEMM; fewer channels, less y keep the map.
  (Since stop 36 the register tiles of strided_pointwise.cpp take these forwards at AVX-512
  before this rule is asked: the bit-equality with 'im2col' holds below AVX-512 only.)
- use_tap_gemm: a forward with <= 64 input channels and >= 16 MiB of x runs im2col instead of
  the per-(line, tap) GEMMs; its backward data keeps the tap GEMMs.
Shapes: odd and even sizes, 'same' and 'valid', batch 1 (oracle only) and > 1, bias + relu
and a residual; NaN in x reaches exactly the oracle's outputs; 1 and 2 threads.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from fastconv.functional._args import resolve_padding
from conv_oracle import close

S2 = (2, 2)


def _operands(seed, n, hw, cin, cout, padding):
    pads = resolve_padding(padding, (hw, hw), (1, 1), S2, (1, 1))
    args = (S2, pads, (1, 1), 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, hw, hw, cin)).astype(np.float32)
    w = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return rng, x, w, b, args


def _oracle(x, w, b, args):
    return R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), *args)


def _forward(x, w, b, args, algorithm="auto", threads=1, act="linear", residual=None):
    saved_algo, saved_threads = _C.get_conv_algorithm(), _C.get_num_threads()
    _C.set_conv_algorithm(algorithm)
    _C.set_num_threads(threads)
    try:
        return _C.conv2d_forward(x, w, b, *args, act, residual)
    finally:
        _C.set_conv_algorithm(saved_algo)
        _C.set_num_threads(saved_threads)


# (n, hw, cin, cout, padding): y bytes = n * 14 * 14 * cout * 4
GEMM_SIDE = {
    "c31_odd_same": (180, 27, 30, 31, "same"),     # 4.37 MB of y, rows of 14
    "c32_even_valid": (172, 28, 32, 32, "valid"),  # 4.31 MB
}
MAP_SIDE = {
    "c32_less_y": (32, 27, 32, 32, "same"),        # 0.8 MB of y
    "c28_channels": (180, 28, 28, 32, "valid"),    # Cin 28
    "c32_batch1_long_rows": (1, 57, 31, 32, "same"),
}


@pytest.mark.parametrize("name", sorted(GEMM_SIDE))
def test_narrow_short_rows_with_large_y_run_the_gemm(name):
    _, x, w, b, args = _operands(1, *GEMM_SIDE[name])
    y = _forward(x, w, b, args)
    close(y, _oracle(x, w, b, args))
    # At AVX-512 every strided 1x1 forward of 17..32 channels each side now runs the register
    # tiles of strided_pointwise.cpp first (stop 36, tests/test_strided_pointwise.py), ahead
    # of this rule; at avx2 (stop 37) those of strided_pointwise_wide.cpp from 25 channels;
    # at the baseline the GEMM.
    if _C.isa_level() == "baseline":
        assert np.array_equal(y, _forward(x, w, b, args, "im2col"))


@pytest.mark.parametrize("name", sorted(MAP_SIDE))
def test_narrow_map_side_matches_oracle(name):
    _, x, w, b, args = _operands(2, *MAP_SIDE[name])
    close(_forward(x, w, b, args), _oracle(x, w, b, args))


# (n, hw, cin, cout, padding): x bytes = n * hw * hw * cin * 4
STREAMED = {
    "c48_odd_same": (29, 55, 48, 40, "same"),    # 16.8 MB of x, rows of 28
    "c64_even_valid": (21, 56, 64, 64, "valid"),  # 16.9 MB
}
TAP_SIDE = {
    "c48_batch1_cached": (1, 111, 48, 48, "same"),  # 2.4 MB of x
    "c96_channels": (12, 56, 96, 32, "valid"),      # Cin 96
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(STREAMED))
def test_streamed_pointwise_forward_runs_im2col(name, threads):
    rng, x, w, b, args = _operands(3, *STREAMED[name])
    ref = _oracle(x, w, b, args)
    residual = rng.standard_normal(ref.shape).astype(np.float32)
    y = _forward(x, w, b, args, threads=threads, act="relu", residual=residual)
    close(y, np.maximum(ref + residual, 0.0))
    # At avx2 strided 1x1 convs of 33..64 channels each side run the register tiles of
    # strided_pointwise_wide.cpp first (stop 37, tests/test_strided_pointwise_wide.py).
    if _C.isa_level() != "avx2":
        assert np.array_equal(y, _forward(x, w, b, args, "im2col", threads, "relu", residual))


@pytest.mark.parametrize("name", sorted(TAP_SIDE))
def test_tap_side_matches_oracle(name):
    _, x, w, b, args = _operands(4, *TAP_SIDE[name])
    close(_forward(x, w, b, args, act="relu"), np.maximum(_oracle(x, w, b, args), 0.0))


def test_streamed_pointwise_backward_data_matches_oracle():
    # The rule is the forward's: the backward data of the same shape keeps the tap GEMMs.
    rng, x, w, b, args = _operands(5, *STREAMED["c48_odd_same"])
    dy = rng.standard_normal((x.shape[0], 28, 28, w.shape[3])).astype(np.float32)
    close(_C.conv2d_backward_data(dy, w, x.shape, *args),
          R.conv2d_backward_data(dy.astype(np.float64), w.astype(np.float64), x.shape, *args))


@pytest.mark.parametrize("case", [GEMM_SIDE["c31_odd_same"], STREAMED["c48_odd_same"]])
def test_nan_and_inf_in_x_reach_the_oracles_outputs(case):
    _, x, w, b, args = _operands(6, *case)
    x[3, 4, 6, 1] = np.nan   # an even pixel: read at stride 2
    x[7, 10, 12, 2] = np.inf
    x[9, 5, 5, 0] = np.nan   # odd: skipped by the stride, must not appear
    ref = _oracle(x, w, b, args)
    y = _forward(x, w, b, args)
    bad = ~np.isfinite(ref)  # NaN, and +-inf (or NaN where inf terms of both signs meet)
    assert bad[3, 2, 3].all() and bad[7, 5, 6].all() and not bad[9].any()
    assert np.array_equal(~np.isfinite(y), bad)
    np.testing.assert_array_equal(y[bad], ref[bad].astype(np.float32))  # NaN for NaN, same inf
    close(np.where(bad, 0, y).astype(np.float32), np.where(bad, 0, ref))


def test_streamed_pointwise_prepared_weights():
    # Routed to im2col, the shape now takes the inference plan's packed weights
    # (conv2d_prepare; the tap GEMMs read w itself): same result with and without them.
    rng, x, w, b, args = _operands(7, *STREAMED["c48_odd_same"])
    p = _C.conv2d_prepare(w, x.shape, *args)
    if not _C.has_native_gemm:
        assert p is None
        return
    assert p is not None and p.size == 48 * 64  # Cout 40 padded to 64
    ref = _oracle(x, w, b, args)
    residual = rng.standard_normal(ref.shape).astype(np.float32)
    y = _forward(x, w, b, args, act="relu", residual=residual)
    np.testing.assert_array_equal(_C.conv2d_forward(x, w, b, *args, "relu", residual, p), y)
    close(y, np.maximum(ref + residual, 0.0))
