"""Strided convs without im2col, and the transposed weight-gradient product (csrc/cpu/conv2d.cpp).

Strided ungrouped convs with >= 32 input and output channels run forward and backward data
as per-(line, tap) GEMMs on x, dy and the weights in place ("tap GEMMs"); the weight pass of
the im2col family accumulates dW^T = dy^T @ col when K = KH*KW*Cin_g is a multiple of 32.
Both are checked against the float64 oracle (all three passes, with and without bias, under
the default setting and under 'im2col', which keeps the col path) and by the adjoint
identities in float64: <dx, v> = <dy, conv(v, w)> and <dw, u> = <dy, conv(x, u)>, which hold
for the true gradients of this linear map whatever the oracle's backward does.
"""
import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from fastconv.functional._args import resolve_padding
from conv_oracle import check_conv_passes, close as _close
from threads_used import conv_pass_threads

# name: (n, h, w, cin, cout, (kh, kw), strides, padding, dilation, groups)
CASES = {
    "s2_same_odd_input": (2, 9, 11, 32, 40, (3, 3), (2, 2), "same", (1, 1), 1),
    "s2_valid_batch1": (1, 8, 8, 33, 32, (3, 3), (2, 2), "valid", (1, 1), 1),
    "even_kernel_same_unequal_strides": (3, 7, 10, 32, 36, (2, 2), (2, 3), "same", (1, 1), 1),
    "even_kernel_4x4_same": (2, 16, 16, 64, 32, (4, 4), (2, 2), "same", (1, 1), 1),
    "dilation_rows": (2, 13, 12, 40, 32, (3, 3), (2, 2), "same", (2, 1), 1),
    "dilation_columns": (2, 11, 13, 32, 34, (3, 3), (2, 2), "same", (1, 2), 1),
    "stride_3_pads_over_half": (1, 5, 5, 32, 32, (5, 5), (3, 3), "same", (1, 1), 1),
    "asymmetric_wide_pads": (2, 6, 7, 32, 48, (3, 3), (2, 2), ((2, 0), (3, 1)), (1, 1), 1),
    "no_interior_column": (1, 4, 3, 32, 32, (5, 5), (2, 2), ((2, 2), (2, 2)), (1, 1), 1),
    # The transposed weight product (K % 32 == 0, Cout_g <= K), with and without im2col.
    "pointwise_transposed_dw": (2, 5, 7, 64, 48, (1, 1), (1, 1), "valid", (1, 1), 1),
    "grouped_pointwise_transposed_dw": (2, 6, 6, 64, 64, (1, 1), (1, 1), "valid", (1, 1), 2),
    "grouped_3x3_transposed_dw": (2, 7, 6, 64, 32, (3, 3), (1, 1), "same", (1, 1), 2),
    "stride_2_1x1": (2, 9, 9, 32, 64, (1, 1), (2, 2), "valid", (1, 1), 1),
}


def _setup(seed, n, h, w, cin, cout, k, strides, padding, dilation, groups, bias=True):
    pads = resolve_padding(padding, (h, w), k, strides, dilation)
    args = (strides, pads, dilation, groups)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((k[0], k[1], cin // groups, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    return rng, x, wt, b, args




@pytest.mark.parametrize("algorithm", ["auto", "im2col"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", sorted(CASES))
def test_against_float64_oracle(name, bias, algorithm):
    saved = _C.get_conv_algorithm()
    _C.set_conv_algorithm(algorithm)
    try:
        rng, x, wt, b, args = _setup(7, *CASES[name], bias=bias)
        check_conv_passes(rng, x, wt, b, args)
    finally:
        _C.set_conv_algorithm(saved)


@pytest.mark.parametrize("name", ["s2_same_odd_input", "even_kernel_same_unequal_strides",
                                  "dilation_columns", "asymmetric_wide_pads",
                                  "grouped_3x3_transposed_dw"])
def test_adjoint_identities_float64(name):
    rng, x, wt, _, args = _setup(11, *CASES[name], bias=False)
    y_shape = _C.conv2d_forward(x, wt, None, *args).shape
    dy = rng.standard_normal(y_shape).astype(np.float32)
    v = rng.standard_normal(x.shape)
    u = rng.standard_normal(wt.shape)
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args).astype(np.float64)
    dw, _ = _C.conv2d_backward_weights(dy, x, wt.shape, *args, False)
    dy64 = dy.astype(np.float64)
    lhs_x, rhs_x = np.vdot(dx, v), np.vdot(dy64, R.conv2d_forward(v, wt.astype(np.float64), None, *args))
    lhs_w, rhs_w = np.vdot(dw.astype(np.float64), u), np.vdot(dy64, R.conv2d_forward(x.astype(np.float64), u, None, *args))
    # float32 sums of ~1e3..1e4 unit-scale products: relative error well under 1e-4
    assert abs(lhs_x - rhs_x) <= 1e-4 * (abs(rhs_x) + np.sqrt(dx.size))
    assert abs(lhs_w - rhs_w) <= 1e-4 * (abs(rhs_w) + np.sqrt(dw.size))


def test_activation_fused_in_tap_forward():
    _, x, wt, b, args = _setup(3, *CASES["s2_same_odd_input"])
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    _close(_C.conv2d_forward(x, wt, b, *args, "relu"), np.maximum(ref, 0.0))


def test_nan_propagates_like_the_oracle():
    rng, x, wt, b, args = _setup(5, *CASES["s2_same_odd_input"])
    x[1, 4, 5, 3] = np.nan
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y = _C.conv2d_forward(x, wt, b, *args)
    ref_y = R.conv2d_forward(x64, w64, b.astype(np.float64), *args)
    assert np.isnan(ref_y).any() and np.array_equal(np.isnan(y), np.isnan(ref_y))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy[0, 2, 3, 7] = np.nan
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    ref_dx = R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args)
    assert np.array_equal(np.isnan(dx), np.isnan(ref_dx)) and np.isnan(dx).any()


@pytest.mark.parametrize("threads", [1, 2])
def test_tap_forward_edge_columns_in_blocks(threads):
    # The tap forward gathers the edge columns (windows leaving x: here ox = 0 and the last) of
    # up to 14 lines into one product whose rows are a line apart in y; 5 images of 13 lines
    # make blocks (14 lines on 1 thread, 8 on 2) that cross images and a short last block. A NaN in x's first column (read
    # only by edge column 0) and in its last one (read by interior and edge columns) must reach
    # exactly the outputs the oracle's do, under a residual and relu.
    saved = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        rng, x, wt, b, args = _setup(21, 5, 25, 27, 32, 48, (3, 3), (2, 2), "same", (1, 1), 1)
        x[1, 6, 0, 5] = np.nan
        x[4, 11, 26, 9] = np.nan
        x64, w64 = x.astype(np.float64), wt.astype(np.float64)
        ref = R.conv2d_forward(x64, w64, b.astype(np.float64), *args)
        residual = rng.standard_normal(ref.shape).astype(np.float32)
        ref = np.maximum(ref + residual, 0.0)
        y = _C.conv2d_forward(x, wt, b, *args, "relu", residual)
        nan = np.isnan(ref)
        assert nan[1, :, 0].any() and nan[4, :, -1].any() and not nan[0].any()
        assert np.array_equal(np.isnan(y), nan)
        _close(np.where(nan, 0, y).astype(np.float32), np.where(nan, 0, ref))
    finally:
        _C.set_num_threads(saved)


def test_tap_forward_one_image_item_team():
    # Batch 1 at 2 threads shares the blocks of lines out through the item team, each
    # participant gathering edge columns into its own scratch (slot-indexed).
    saved = _C.get_num_threads()
    _C.set_num_threads(2)
    try:
        rng, x, wt, b, args = _setup(23, 1, 61, 45, 48, 64, (3, 3), (2, 2), "same", (1, 1), 1)
        ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
        residual = rng.standard_normal(ref.shape).astype(np.float32)
        _close(_C.conv2d_forward(x, wt, b, *args, "relu", residual), np.maximum(ref + residual, 0.0))
    finally:
        _C.set_num_threads(saved)


def test_threaded_tap_passes_match_oracle():
    # Large enough for every pass to take both threads (kParallelMacs), batch 1 included: the
    # tap backward data splits dx rows, not images.
    saved = _C.get_num_threads()
    _C.set_num_threads(2)
    try:
        for n in (1, 3):
            _, x, wt, b, args = _setup(9, n, 33, 31, 64, 64, (3, 3), (2, 2), "same", (1, 1), 1)
            used = conv_pass_threads(x, wt, *args)
            assert used["forward"] == 2 and used["backward_data"] == 2, used
            x64, w64 = x.astype(np.float64), wt.astype(np.float64)
            ref_y = R.conv2d_forward(x64, w64, b.astype(np.float64), *args)
            _close(_C.conv2d_forward(x, wt, b, *args), ref_y)
            dy = np.random.default_rng(n).standard_normal(ref_y.shape).astype(np.float32)
            _close(_C.conv2d_backward_data(dy, wt, x.shape, *args),
                   R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))
            dw, _ = _C.conv2d_backward_weights(dy, x, wt.shape, *args, False)
            _close(dw, R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, False)[0])
    finally:
        _C.set_num_threads(saved)


@pytest.mark.parametrize("name", ["s2_same_odd_input", "asymmetric_wide_pads", "pointwise_transposed_dw"])
def test_openblas_backend_takes_the_per_tap_products(name):
    # cblas takes no leading dimension below the row length, so under OpenBLAS the strided
    # forward runs one product per tap (K = C) instead of one per kernel row (K = KW*C).
    saved = _C.get_gemm_backend()
    _C.set_gemm_backend("openblas")
    try:
        rng, x, wt, b, args = _setup(13, *CASES[name])
        x64, w64 = x.astype(np.float64), wt.astype(np.float64)
        ref_y = R.conv2d_forward(x64, w64, b.astype(np.float64), *args)
        _close(_C.conv2d_forward(x, wt, b, *args), ref_y)
        dy = rng.standard_normal(ref_y.shape).astype(np.float32)
        _close(_C.conv2d_backward_data(dy, wt, x.shape, *args),
               R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))
        dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
        rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, True)
        _close(dw, rdw)
        _close(db, rdb)
    finally:
        _C.set_gemm_backend(saved)
