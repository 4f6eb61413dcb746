"""The flat-row kernel for 3x3 convs with C = 1..4 channels in and out (csrc/cpu/few_channel_rows.cpp;
it takes the stride-2 backward passes of C = 2..4 that few_channel_s2_planes.cpp leaves (C = 3
and 4 to 64 columns), and stride 1 with C = 1 from 28 columns (64 for the weight pass) and C = 2's
weight pass; the other shapes here check the kernels that take them and the hand-back to the
direct path): all three passes against the float64 reference on odd shapes
(widths below one vector, not multiples of 5 pixels, 'same', 'valid' and uneven explicit pads up
to 2, strides 1 and 2, batch 1), threaded runs, the fused activation, non-finite inputs (the
kernel hands those back to the direct path, which must give the reference's NaN and inf
pattern), and float64 central differences through the autograd conv op. Tolerances:
conv_oracle.close (rtol 1e-4)."""
import itertools

import numpy as np
import pytest

import fastconv as fc
from fastconv import _C
from fastconv import functional as F
from fastconv import reference as R
from fastconv.autograd import Tensor, ops
from fastconv.reference.gradcheck import check_grad
from conv_oracle import check_conv_passes, close, same_nonfinite

# (h, w): widths under 5, under 16, not multiples of 5, one vector plus a little, long rows
SIZES = ((1, 1), (3, 2), (5, 7), (9, 13), (6, 17), (4, 31), (3, 46), (2, 67))


def _data(rng, n, h, w, c, bias=True):
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    return x, wt, b


@pytest.mark.parametrize("c, stride, padding", list(itertools.product((1, 2, 3, 4), (1, 2), ("same", "valid"))))
def test_passes_against_reference(c, stride, padding):
    rng = np.random.default_rng(100 * c + 10 * stride + (padding == "same"))
    for i, (h, w) in enumerate(SIZES):
        if padding == "valid" and (h < 3 or w < 3):
            continue
        pads = tuple(F.resolve_padding(padding, (h, w), (3, 3), (stride, stride)))
        args = ((stride, stride), pads, (1, 1), 1)
        x, wt, b = _data(rng, 1 + i % 2, h, w, c, bias=i % 3 != 0)
        check_conv_passes(rng, x, wt, b, args)
        assert _C.conv_algorithm(x.shape, wt.shape, *args)["forward"] == "direct"


@pytest.mark.parametrize("c", (1, 3, 4))
def test_explicit_uneven_pads(c):
    """Pads (top, bottom, left, right) each in 0..2, also wider on the right than the window
    reaches (output columns of padding only) and stride 2 with odd and even sizes."""
    rng = np.random.default_rng(7 + c)
    for pads in ((0, 2, 2, 0), (2, 0, 0, 2), (1, 2, 0, 1), (2, 2, 2, 2), (0, 1, 1, 0)):
        for stride in (1, 2):
            for h, w in ((5, 8), (6, 11), (3, 19)):
                x, wt, b = _data(rng, 1, h, w, c)
                check_conv_passes(rng, x, wt, b, ((stride, stride), pads, (1, 1), 1))


def test_threaded_and_deterministic():
    """Large enough for several threads: work items split images into row blocks, per-thread
    weight partials; the same thread count gives the same bits."""
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        rng = np.random.default_rng(5)
        for c, stride in ((1, 1), (3, 2), (3, 1), (4, 2)):
            x, wt, b = _data(rng, 6, 40, 37, c)
            pads = tuple(F.resolve_padding("same", (40, 37), (3, 3), (stride, stride)))
            args = ((stride, stride), pads, (1, 1), 1)
            check_conv_passes(rng, x, wt, b, args)
            dy = rng.standard_normal(_C.conv2d_forward(x, wt, b, *args).shape).astype(np.float32)
            a = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
            b2 = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
            assert np.array_equal(a[0], b2[0]) and np.array_equal(a[1], b2[1])
    finally:
        _C.set_num_threads(old)


@pytest.mark.parametrize("activation", ("relu", "sigmoid", "tanh"))
def test_fused_activation(activation):
    rng = np.random.default_rng(11)
    x, wt, b = _data(rng, 2, 9, 23, 3)
    for stride in (1, 2):
        y = F.conv2d(x, wt, b, strides=stride, padding="same", activation=activation)
        pads = tuple(F.resolve_padding("same", (9, 23), (3, 3), (stride, stride)))
        ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64),
                               (stride, stride), pads, (1, 1), 1)
        ref = {"relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh,
               "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}[activation](ref)
        close(y, ref)


# the float64 reference itself computes 0 * inf (NaN, as it should): numpy warns about it
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c, stride", list(itertools.product((1, 3), (1, 2))))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_nonfinite_inputs_match_reference(c, stride, bad):
    """A NaN or inf in x, dy or w: the reference's pattern exactly (0 * inf is NaN only where
    the reference multiplies them). The kernel's zero weight lanes would otherwise spread them."""
    rng = np.random.default_rng(3)
    n, h, w = 1, 7, 29  # 29 columns: stride 1 with C = 1 runs the kernel from 28
    pads = tuple(F.resolve_padding("same", (h, w), (3, 3), (stride, stride)))
    args = ((stride, stride), pads, (1, 1), 1)
    x, wt, b = _data(rng, n, h, w, c)
    x[0, 3, 9, c - 1] = bad
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y = _C.conv2d_forward(x, wt, b, *args)
    same_nonfinite(y, R.conv2d_forward(x64, w64, b.astype(np.float64), *args))
    assert np.isnan(y).any() or np.isinf(y).any()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dw, _ = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    same_nonfinite(dw, R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, True)[0])
    dy[0, 2, 4, 0] = bad
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    same_nonfinite(dx, R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))
    # A non-finite weight with finite data: the kernel hands the call to the direct path,
    # which multiplies padding zeros by it (NaN where the reference leaves the pad out); so
    # at least every output the reference makes non-finite is non-finite, the rest close.
    x, wt, b = _data(rng, n, h, w, c)
    wt[1, 2, 0, c - 1] = bad
    w64 = wt.astype(np.float64)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    for got, ref in ((_C.conv2d_forward(x, wt, b, *args),
                      R.conv2d_forward(x.astype(np.float64), w64, b.astype(np.float64), *args)),
                     (_C.conv2d_backward_data(dy, wt, x.shape, *args),
                      R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))):
        assert not np.isfinite(got[~np.isfinite(ref)]).any()
        both = np.isfinite(ref) & np.isfinite(got)
        close(got[both], ref[both])
        assert not np.isfinite(ref).all()


@pytest.mark.parametrize("c, stride, padding", [(1, 1, "same"), (3, 2, "same"), (2, 2, "valid"), (4, 1, "valid")])
def test_autograd_gradients_by_central_differences(c, stride, padding):
    """Gradients of sum(conv2d(x, w, b) * dy) through the autograd op (native float32 kernels)
    against float64 central differences of the reference forward."""
    rng = np.random.default_rng(21 + c)
    x, wt, b = _data(rng, 1, 4, 29, c)
    xt, wt_t, bt = (Tensor(a, requires_grad=True) for a in (x, wt, b))
    out = ops.conv2d(xt, wt_t, bt, strides=stride, padding=padding)
    dy = rng.standard_normal(out.shape)
    (out * Tensor(dy.astype(np.float32))).sum().backward()
    pads = tuple(F.resolve_padding(padding, (4, 29), (3, 3), (stride, stride)))
    args = ((stride, stride), pads, (1, 1), 1)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, wt, b))

    def loss(xv, wv, bv):
        return float((R.conv2d_forward(xv, wv, bv, *args) * dy).sum())

    tol = dict(rtol=2e-4, atol=2e-4)
    check_grad(lambda v: loss(v, w64, b64), x64, xt.grad, name="x", **tol)
    check_grad(lambda v: loss(x64, v, b64), w64, wt_t.grad, name="w", **tol)
    check_grad(lambda v: loss(x64, w64, v), b64, bt.grad, name="b", **tol)


# ---- the direct path's register transposes (csrc/cpu/pixel_transpose.h) ----
# C = 2..8 in and out at stride 1 (and Cin != Cout) run the planar kernel of direct_conv.cpp,
# whose NHWC <-> planar copies go a register of pixels at a time (16 at avx512, 8 at avx2, 4
# at the baseline) with the remaining columns one by one: widths below, at and around
# multiples of 16 and of 8, rows of several blocks, batch 1 and 2.
TRANSPOSE_SIZES = ((3, 4), (5, 8), (4, 15), (3, 16), (6, 17), (2, 31), (3, 33), (2, 48), (3, 50))


@pytest.mark.parametrize("c, stride, padding",
                         list(itertools.product((2, 3, 5, 6, 7, 8), (1, 2), ("same", "valid"))))
def test_transposed_rows_against_reference(c, stride, padding):
    rng = np.random.default_rng(1000 + 100 * c + 10 * stride + (padding == "same"))
    for i, (h, w) in enumerate(TRANSPOSE_SIZES):
        if padding == "valid" and (h < 3 or w < 3):
            continue
        pads = tuple(F.resolve_padding(padding, (h, w), (3, 3), (stride, stride)))
        args = ((stride, stride), pads, (1, 1), 1)
        x, wt, b = _data(rng, 1 + i % 2, h, w, c, bias=i % 3 != 0)
        check_conv_passes(rng, x, wt, b, args)
        assert _C.conv_algorithm(x.shape, wt.shape, *args)["forward"] == "direct"


@pytest.mark.parametrize("cin, cout", [(3, 6), (6, 3), (2, 8), (8, 5)])
def test_transposed_rows_uneven_channels(cin, cout):
    """Cin != Cout: the packing transposes Cin channels, the write-back Cout (or Cin for
    backward data); 5x5 kernels too."""
    rng = np.random.default_rng(cin * 10 + cout)
    for k in (3, 5):
        for h, w in ((4, 19), (3, 35)):
            x = rng.standard_normal((2, h, w, cin)).astype(np.float32)
            wt = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
            b = rng.standard_normal(cout).astype(np.float32)
            pads = tuple(F.resolve_padding("same", (h, w), (k, k), (1, 1)))
            check_conv_passes(rng, x, wt, b, ((1, 1), pads, (1, 1), 1))


# the float64 reference itself computes 0 * inf (NaN, as it should): numpy warns about it
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("c", (3, 6))
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
def test_transposed_rows_nonfinite(c, bad):
    """A NaN or infinity inside a transposed register block (column 9 of 35) and in the scalar
    tail (column 33) reaches exactly the outputs the reference's does."""
    rng = np.random.default_rng(40 + c)
    h, w = 5, 35
    pads = tuple(F.resolve_padding("same", (h, w), (3, 3), (1, 1)))
    args = ((1, 1), pads, (1, 1), 1)
    x, wt, b = _data(rng, 1, h, w, c)
    x[0, 2, 9, c - 1] = bad
    x[0, 4, 33, 0] = bad
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y = _C.conv2d_forward(x, wt, b, *args)
    same_nonfinite(y, R.conv2d_forward(x64, w64, b.astype(np.float64), *args))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    same_nonfinite(dw, R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, True)[0])
    dy[0, 1, 20, 1] = bad
    dy[0, 3, 34, c - 1] = bad
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    same_nonfinite(dx, R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))
    _, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    assert not np.isfinite(db[[1, c - 1]]).any() and np.isfinite(np.delete(db, [1, c - 1])).all()


def test_transposed_rows_threaded_and_deterministic():
    """2 threads (row blocks of several images): reference values, and the same bits twice."""
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(2)
        rng = np.random.default_rng(55)
        for c in (3, 6, 7):
            x, wt, b = _data(rng, 8, 30, 41, c)
            pads = tuple(F.resolve_padding("same", (30, 41), (3, 3), (1, 1)))
            args = ((1, 1), pads, (1, 1), 1)
            y = check_conv_passes(rng, x, wt, b, args)
            assert np.array_equal(y, _C.conv2d_forward(x, wt, b, *args))
            dy = rng.standard_normal(y.shape).astype(np.float32)
            d1 = _C.conv2d_backward_data(dy, wt, x.shape, *args)
            assert np.array_equal(d1, _C.conv2d_backward_data(dy, wt, x.shape, *args))
            a = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
            a2 = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
            assert np.array_equal(a[0], a2[0]) and np.array_equal(a[1], a2[1])
    finally:
        _C.set_num_threads(old)


@pytest.mark.parametrize("c, padding", [(3, "same"), (6, "valid"), (5, "same")])
def test_transposed_rows_gradients_by_central_differences(c, padding):
    """Stride 1 with 3, 5 and 6 channels: autograd gradients (float32 kernels) against float64
    central differences of the reference forward; 19 columns (one register block and a tail)."""
    rng = np.random.default_rng(77 + c)
    x, wt, b = _data(rng, 1, 4, 19, c)
    xt, wt_t, bt = (Tensor(a, requires_grad=True) for a in (x, wt, b))
    out = ops.conv2d(xt, wt_t, bt, strides=1, padding=padding, activation="tanh")
    dy = rng.standard_normal(out.shape)
    (out * Tensor(dy.astype(np.float32))).sum().backward()
    pads = tuple(F.resolve_padding(padding, (4, 19), (3, 3), (1, 1)))
    args = ((1, 1), pads, (1, 1), 1)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, wt, b))

    def loss(xv, wv, bv):
        return float((np.tanh(R.conv2d_forward(xv, wv, bv, *args)) * dy).sum())

    tol = dict(rtol=5e-4, atol=5e-4)
    check_grad(lambda v: loss(v, w64, b64), x64, xt.grad, name="x", **tol)
    check_grad(lambda v: loss(x64, v, b64), w64, wt_t.grad, name="w", **tol)
    check_grad(lambda v: loss(x64, w64, v), b64, bt.grad, name="b", **tol)
