"""Strided 1x1 convs with 17..32 channels each side (csrc/cpu/strided_pointwise*.cpp, helper W,
stop 36): the forward and the weight pass run on register tiles at AVX-512 (at avx2 and the
baseline these shapes keep the narrow maps or the GEMM; the same tests run there too).

Each pass against the float64 oracle (conv_oracle.close: rtol 1e-4, atol 1e-5 x the output's
magnitude) on odd and even sizes, 'same' and 'valid', strides 2, 3 and (1, 2) / (2, 1), batch 1
and > 1, Cin != Cout, both halves of the kernel's channel range (17..24: a ymm for channels
16.., 25..32: a second zmm), pixel counts that leave a part-filled last tile and item (tiles
of 6 pixels cross rows and images: odd H included), bias / no bias, relu and a residual, 1 and
2 threads (the weight pass then bit-equal run to run); NaN and inf in x and dy reach exactly
the oracle's outputs. (Cached x stays on the narrow kernels: the forward of one image under
4 MiB of x, the weight pass under 8 MiB with output rows of >= 7 pixels; the cases include
both sides.)
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from conv_oracle import close
from fastconv.functional._args import resolve_padding


def _args(hw, strides, padding):
    pads = resolve_padding(padding, (hw, hw), (1, 1), strides, (1, 1))
    return (strides, pads, (1, 1), 1)


def _operands(seed, n, hw, cin, cout, strides=(2, 2), padding="same"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, hw, hw, cin)).astype(np.float32)
    w = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return rng, x, w, b, _args(hw, strides, padding)


def _threads(n, fn):
    saved = _C.get_num_threads()
    _C.set_num_threads(n)
    try:
        return fn()
    finally:
        _C.set_num_threads(saved)


def _oracle_forward(x, w, b, args):
    return R.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                            None if b is None else b.astype(np.float64), *args)


# (n, hw, cin, cout, strides, padding)
CASES = {
    "c24_even_same": (3, 28, 24, 24, (2, 2), "same"),
    "c24_odd_valid": (2, 27, 24, 24, (2, 2), "valid"),     # odd H: tiles cross images
    "c17_to_32": (2, 15, 17, 32, (2, 2), "same"),
    "c32_to_17": (3, 9, 32, 17, (2, 2), "valid"),
    "c25_to_24": (1, 31, 25, 24, (2, 2), "same"),
    "c32_rows_of_4": (40, 7, 32, 32, (2, 2), "same"),        # 640 pixels, rows of 4
    "c20_30_stride3": (2, 17, 20, 30, (3, 3), "valid"),
    "c24_stride_1_2": (2, 13, 24, 24, (1, 2), "same"),
    "c28_stride_2_1": (2, 11, 28, 28, (2, 1), "valid"),
    "c24_batch1_items": (1, 111, 24, 24, (2, 2), "same"),    # 3136 pixels: 4 items, tails
    "c32_batch1_odd": (1, 45, 32, 32, (2, 2), "valid"),
    # x past the routing's cache limits (the forward at batch 1 from 4 MiB of x, the weight
    # pass from 8 MiB unless rows are short: below them the narrow kernels keep these shapes)
    "c24_batch1_large_x": (1, 241, 24, 24, (2, 2), "valid"),  # 5.6 MB
    "c24_large_x": (12, 89, 24, 24, (2, 2), "same"),          # 9.1 MB
    "c32_to_20_large_x": (10, 91, 32, 20, (2, 2), "valid"),   # 10.6 MB
    "c17_32_rows_of_3": (60, 5, 17, 32, (2, 2), "same"),      # rows of 3: the weight pass here
    "c24_stride_2_1_rows_of_6": (50, 6, 24, 24, (2, 1), "valid"),
    "c24_30_stride_1_2_rows_of_6": (30, 11, 24, 30, (1, 2), "same"),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_oracle(name, threads):
    _, x, w, b, args = _operands(1, *CASES[name])
    close(_threads(threads, lambda: _C.conv2d_forward(x, w, b, *args)), _oracle_forward(x, w, b, args))


@pytest.mark.parametrize("name", ["c24_odd_valid", "c17_to_32", "c32_rows_of_4"])
def test_forward_without_bias_relu_and_residual(name):
    rng, x, w, _, args = _operands(2, *CASES[name])
    ref = _oracle_forward(x, w, None, args)
    close(_C.conv2d_forward(x, w, None, *args), ref)
    close(_C.conv2d_forward(x, w, None, *args, "relu"), np.maximum(ref, 0.0))
    residual = rng.standard_normal(ref.shape).astype(np.float32)
    y = _threads(2, lambda: _C.conv2d_forward(x, w, None, *args, "relu", residual))
    close(y, np.maximum(ref + residual, 0.0))


def _weights(dy, x, w, args, bias, threads=1):
    return _threads(threads, lambda: _C.conv2d_backward_weights(dy, x, w.shape, *args, bias))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_weight_pass_matches_oracle(name, threads):
    rng, x, w, _, args = _operands(3, *CASES[name])
    y_shape = _oracle_forward(x[:1], w, None, args).shape[1:]
    dy = rng.standard_normal((x.shape[0],) + y_shape).astype(np.float32)
    bias = name != "c32_to_17"
    dw, db = _weights(dy, x, w, args, bias, threads)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), w.shape, *args, bias)
    close(dw, rdw)
    if bias:
        close(db, rdb)
    else:
        assert db is None
    if threads == 2:  # per-thread partials summed in thread order: the same bits every run
        dw2, db2 = _weights(dy, x, w, args, bias, threads)
        assert np.array_equal(dw, dw2) and (not bias or np.array_equal(db, db2))


def test_backward_data_of_the_same_shapes_matches_oracle():
    # Not this kernel's pass (the narrow maps or the tap GEMMs keep it): checked alongside.
    for name in ("c24_odd_valid", "c17_to_32", "c24_stride_1_2"):
        rng, x, w, _, args = _operands(4, *CASES[name])
        y_shape = _oracle_forward(x[:1], w, None, args).shape[1:]
        dy = rng.standard_normal((x.shape[0],) + y_shape).astype(np.float32)
        close(_C.conv2d_backward_data(dy, w, x.shape, *args),
              R.conv2d_backward_data(dy.astype(np.float64), w.astype(np.float64), x.shape, *args))


def _assert_same_non_finite(got, ref):
    bad = ~np.isfinite(ref)
    assert np.array_equal(~np.isfinite(got), bad)
    np.testing.assert_array_equal(got[bad], ref[bad].astype(np.float32))  # NaN for NaN, same inf
    close(np.where(bad, 0, got).astype(np.float32), np.where(bad, 0, ref))
    return bad


@pytest.mark.parametrize("name", ["c24_even_same", "c17_to_32", "c32_batch1_odd"])
def test_nan_and_inf_in_x_reach_the_oracles_forward_outputs(name):
    _, x, w, b, args = _operands(5, *CASES[name])
    n = x.shape[0] - 1
    x[n, 4, 6, 1] = np.nan   # a read pixel (even row and column at stride 2)
    x[0, 2, 8, 16] = np.inf  # an upper channel
    x[0, 5, 5, 0] = np.nan   # odd: skipped by the stride, must not appear
    bad = _assert_same_non_finite(_C.conv2d_forward(x, w, b, *args), _oracle_forward(x, w, b, args))
    assert bad[n, 2, 3].all() and bad[0, 1, 4].any() and not bad[0, 2:, 2:].all()


@pytest.mark.parametrize("name", ["c24_even_same", "c25_to_24"])
def test_nan_and_inf_reach_the_oracles_weight_gradients(name):
    rng, x, w, _, args = _operands(6, *CASES[name])
    y_shape = _oracle_forward(x[:1], w, None, args).shape[1:]
    dy = rng.standard_normal((x.shape[0],) + y_shape).astype(np.float32)
    x[0, 4, 6, 3] = np.nan   # read: row 3 of dw
    x[0, 5, 5, 7] = np.inf   # skipped: nothing
    dy[0, 1, 1, 20] = np.inf  # column 20 of dw and db[20]
    dw, db = _C.conv2d_backward_weights(dy, x, w.shape, *args, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64), w.shape, *args, True)
    bad = _assert_same_non_finite(dw, rdw)
    assert bad[0, 0, 3].all() and bad[0, 0, :, 20].all() and not bad[0, 0, 7, :20].any()
    _assert_same_non_finite(db, rdb)


def test_algorithm_query_names_the_register_tiles_direct():
    # conv_algorithm reports these passes as "direct" (a direct kernel, no GEMM) at AVX-512,
    # and the backward data as the narrow maps' ("direct") or the GEMM's, as before.
    _, x, w, _, args = _operands(7, *CASES["c32_to_20_large_x"])
    algos = _C.conv_algorithm(x.shape, w.shape, *args)
    if _C.isa_level() == "avx512":
        assert algos["forward"] == "direct" and algos["backward_weights"] == "direct"
    saved = _C.get_conv_algorithm()
    _C.set_conv_algorithm("im2col")
    try:
        assert set(_C.conv_algorithm(x.shape, w.shape, *args).values()) == {"im2col"}
    finally:
        _C.set_conv_algorithm(saved)
