"""The three passes of one native conv against the float64 NumPy reference, shared by the conv
kernel tests: rtol 1e-4, and an absolute tolerance of 1e-5 times the output's magnitude."""
import numpy as np

from fastconv import _C
from fastconv import reference as R

from threads_used import threads_used


def close(got, ref):
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


def check_conv_passes(rng, x, wt, b, args):
    """Forward, backward data and backward weights (args: strides, pads, dilation, groups);
    dy is drawn from rng. Returns the forward output."""
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    y = _C.conv2d_forward(x, wt, b, *args)
    close(y, R.conv2d_forward(x64, w64, None if b is None else b.astype(np.float64), *args))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    close(_C.conv2d_backward_data(dy, wt, x.shape, *args),
          R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))
    bias = b is not None
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, bias)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, bias)
    close(dw, rdw)
    if bias:
        close(db, rdb)
    else:
        assert db is None and rdb is None
    return y


def close_abs(got, ref):
    """No relative slack: |got - ref| <= 1e-5 of the largest |ref| (at least 1)."""
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * scale)


def close_max(got, ref, tol=1e-5):
    """max |got - ref| <= tol x max |ref| (no floor at 1: the few-channel stride-1 tests)."""
    assert got.dtype == np.float32 and got.shape == ref.shape
    scale = float(np.abs(ref).max(initial=0.0))
    err = float(np.abs(got.astype(np.float64) - ref).max(initial=0.0))
    assert err <= tol * max(scale, 1e-30), (err, scale)


def forward_s2(x, wt, b, pads, act=None):
    """The native 3x3 stride-2 forward (dilation 1, groups 1), act fused when given."""
    args = ((2, 2), pads, (1, 1), 1)
    return _C.conv2d_forward(x, wt, b, *args) if act is None else \
        _C.conv2d_forward(x, wt, b, *args, act)


def ref_forward_s2(x, wt, b, pads):
    """forward_s2's float64 reference (no activation)."""
    return R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64),
                            None if b is None else b.astype(np.float64), (2, 2), pads, (1, 1), 1)


def one_and_two_threads(call, runs_on_two=1):
    """call() on one native thread, then runs_on_two times on two (the threads that worked
    counted over those runs); the thread count restored. Returns (one, [two, ...], used)."""
    saved = _C.get_num_threads()
    try:
        _C.set_num_threads(1)
        one = call()
        _C.set_num_threads(2)
        with threads_used() as used:
            twos = [call() for _ in range(runs_on_two)]
    finally:
        _C.set_num_threads(saved)
    return one, twos, used


def check_two_threads(x, wt, b, args, weights=True):
    """The forward and the backward data pass (dy = x, the shapes allow it) on two threads give
    the same bits as on one; with weights, the weight pass (with db) within 1e-6 of one's."""
    old = _C.get_num_threads()
    try:
        _C.set_num_threads(1)
        y1 = _C.conv2d_forward(x, wt, b, *args)
        d1 = _C.conv2d_backward_data(x, wt, x.shape, *args)
        if weights:
            w1, b1 = _C.conv2d_backward_weights(x, x, wt.shape, *args, True)
        _C.set_num_threads(2)
        np.testing.assert_array_equal(_C.conv2d_forward(x, wt, b, *args), y1)
        np.testing.assert_array_equal(_C.conv2d_backward_data(x, wt, x.shape, *args), d1)
        if weights:
            w2, b2 = _C.conv2d_backward_weights(x, x, wt.shape, *args, True)
            close_max(w2, w1.astype(np.float64), 1e-6)
            close_max(b2, b1.astype(np.float64), 1e-6)
    finally:
        _C.set_num_threads(old)


def same_nonfinite(got, ref, check=close):
    """NaN where the reference has NaN, the same infinities, the finite rest close (check:
    close, or close_abs / close_max for the tests without relative slack)."""
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.array_equal(np.isposinf(got), np.isposinf(ref))
    assert np.array_equal(np.isneginf(got), np.isneginf(ref))
    fin = np.isfinite(ref)
    check(np.where(fin, got, 0).astype(np.float32), np.where(fin, ref, 0))


def check_weight_pass(dy, x, wshape, args):
    """The native weight pass (with the bias gradient) against the float64 reference."""
    dw, db = _C.conv2d_backward_weights(dy, x, wshape, *args, True)
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x.astype(np.float64),
                                         wshape, *args, True)
    close(dw, rdw)
    close(db, rdb)
