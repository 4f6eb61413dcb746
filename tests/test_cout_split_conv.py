"""Batch-1 conv forward with the threads splitting the output channels (csrc/cpu/cout_split.cpp).

A conv whose output has too few lines for every thread to get its own im2col chunk (the deep
layers of a network at batch 1) runs with each thread on a block of Cout. Checked against the
NumPy oracle in float64 (rtol 1e-4, atol 1e-5 times the output's magnitude: float32 sums of up
to ~5000 products), and against the same conv on one thread (the row path): each output column
is the same GEMM either way, so with fastconv's own sgemm the two agree bit for bit. The
threads hook (_C._threads_used) shows the split really ran on two threads. Gradients do not
use this path; a training step through a Conv2D layer is checked at 2 threads too.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-5 * scale)


# (batch, h, w, cin, cout, kernel, stride, pads, dilation): 3x3 and 1x1, stride 1 and 2, odd
# sizes, 'same' and 'valid' pads, dilation 2, Cout not a multiple of the 32-column unit.
SHAPES = [
    (1, 4, 4, 512, 96, 3, 1, (1, 1, 1, 1), 1),
    (1, 8, 8, 256, 100, 3, 2, (0, 1, 0, 1), 1),   # 'same', stride 2 (TF: extra pad bottom/right)
    (1, 5, 7, 256, 72, 3, 1, (0, 0, 0, 0), 1),    # 'valid', odd sizes
    (1, 7, 7, 1024, 80, 1, 1, (0, 0, 0, 0), 1),   # pointwise: x is the col matrix
    (1, 9, 9, 1024, 96, 1, 2, (0, 0, 0, 0), 1),   # 1x1 stride 2
    (1, 6, 6, 128, 65, 3, 1, (2, 2, 2, 2), 2),    # dilation 2, 'same'
    (2, 3, 3, 256, 130, 3, 1, (1, 1, 1, 1), 1),   # two images, still one chunk
    (1, 1, 1, 1024, 1000, 1, 1, (0, 0, 0, 0), 1),  # a classifier: few MACs, 4 MB of weights
]


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_cout_split_matches_oracle_and_one_thread(two_threads, activation):
    rng = np.random.default_rng(41)
    native = _C.active_gemm_backend() == "native"
    for n, h, w, cin, cout, k, s, pads, d in SHAPES:
        x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
        wt = (rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        args = ((s, s), pads, (d, d), 1, activation)
        _C._threads_used()
        got = _C.conv2d_forward(x, wt, b, *args)
        assert _C._threads_used() == 2, (n, h, w, cin, cout, k, s)
        f64 = lambda v: v.astype(np.float64)  # noqa: E731
        _close(got, R.conv2d_forward(f64(x), f64(wt), f64(b), *args))
        # the serial im2col path (a strided conv with small weights would take the tap GEMMs,
        # which add the bias first: equal within rounding, not bitwise)
        fastconv.set_num_threads(1)
        fastconv.set_conv_algorithm("im2col")
        try:
            one = _C.conv2d_forward(x, wt, b, *args)
        finally:
            fastconv.set_conv_algorithm("auto")
            fastconv.set_num_threads(2)
        if native:
            np.testing.assert_array_equal(got, one)
        else:
            _close(got, one.astype(np.float64))


def test_cout_split_without_bias_propagates_nan(two_threads):
    rng = np.random.default_rng(42)
    x = rng.standard_normal((1, 4, 4, 512)).astype(np.float32)
    x[0, 1, 2, 7] = np.nan
    wt = (rng.standard_normal((3, 3, 512, 96)) * 0.02).astype(np.float32)
    got = _C.conv2d_forward(x, wt, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    # Every output whose 3x3 window covers the NaN is NaN in all channels; the rest match.
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got[0, 0:3, 1:4]).all() and not np.isnan(got[0, 3]).any()
    finite = ~np.isnan(ref)
    _close(got[finite], ref[finite])


def test_training_step_at_two_threads_matches_one(two_threads):
    """Forward (split) and gradients (unchanged kernels) of a Conv2D layer at batch 1."""
    def grads(threads):
        fastconv.set_num_threads(threads)
        fastconv.set_seed(5)
        layer = fastconv.layers.Conv2D(96, 3, padding="same", activation="relu")
        x = fastconv.Variable(np.random.default_rng(6).standard_normal((1, 4, 4, 256)).astype(np.float32))
        y = layer(x)
        (y * y).sum().backward()
        return np.asarray(y.numpy()), [np.asarray(v.grad) for v in (x, layer.kernel, layer.bias)]

    y2, g2 = grads(2)
    y1, g1 = grads(1)
    _close(y2, y1.astype(np.float64))
    for a, b in zip(g2, g1):
        _close(a, b.astype(np.float64))
