"""_C.zero_pad2d (csrc/cpu/pad2d.cpp): NHWC zero padding, the inference plan's step for a
ZeroPadding2D that no conv takes. Against numpy.pad (exact: a copy), at batch 1 on the item
team and at batch 3 on an OpenMP region (two threads), small and large; bad arguments raise."""
import numpy as np
import pytest

import fastconv
from fastconv import _C, layers

CASES = [((1, 112, 112, 64), (1, 1, 1, 1)), ((3, 57, 41, 5), (0, 2, 3, 0)), ((1, 3, 4, 2), (2, 0, 0, 1)),
         ((2, 1, 1, 7), (0, 0, 0, 0))]


@pytest.mark.parametrize("shape,pads", CASES)
def test_matches_numpy_pad(two_threads, shape, pads):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[::97] = np.nan
    top, bottom, left, right = pads
    want = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    got = _C.zero_pad2d(x, pads)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)  # NaN where x has it, zeros around


def test_bad_arguments():
    x = np.zeros((1, 4, 4, 2), np.float32)
    with pytest.raises(ValueError, match="pads must be >= 0"):
        _C.zero_pad2d(x, (1, -1, 0, 0))
    with pytest.raises(ValueError, match="pads"):
        _C.zero_pad2d(x, (1, 1))
    with pytest.raises(ValueError, match="x must be 4-D"):
        _C.zero_pad2d(np.zeros((4, 4, 2), np.float32), (1, 1, 1, 1))
    with pytest.raises(TypeError, match="x must have dtype float32"):
        _C.zero_pad2d(x.astype(np.float64), (1, 1, 1, 1))


def test_plan_runs_zero_padding_before_a_pool():
    """ZeroPadding2D -> MaxPooling2D (no conv to take the padding): predict through the plan
    equals the layers' own forward."""
    rng = np.random.default_rng(5)
    model = fastconv.Sequential([layers.Input((9, 11, 3)), layers.ZeroPadding2D(((1, 2), (0, 3))),
                                 layers.MaxPooling2D(3, strides=2)])
    x = rng.standard_normal((2, 9, 11, 3)).astype(np.float32) - 1.0  # negatives: the zeros win
    got = model.predict_on_batch(x)
    fastconv.set_inference_plan(False)
    try:
        want = model.predict_on_batch(x)
    finally:
        fastconv.set_inference_plan(True)
    np.testing.assert_array_equal(got, want)
    assert (got == 0).any()


def test_functional_pad_takes_the_kernel_where_it_applies():
    """F.pad: the kernel for NHWC float32 zeros around H and W, numpy.pad otherwise; the
    same values either way, and the layer's gradient is the interior of dy."""
    from fastconv import functional as F
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    for pw, value in [(((0, 0), (1, 2), (3, 0), (0, 0)), 0.0), (((1, 0), (1, 1), (0, 0), (0, 0)), 0.0),
                      (((0, 0), (1, 1), (1, 1), (0, 0)), 2.5), (((0, 0), (0, 0), (1, 1), (0, 2)), 0.0)]:
        np.testing.assert_array_equal(F.pad(x, pw, value), np.pad(x, pw, constant_values=value))
    from fastconv.autograd import Tensor, ops
    xt = Tensor(x, requires_grad=True)
    y = ops.pad(xt, ((0, 0), (1, 2), (3, 0), (0, 0)))
    np.testing.assert_array_equal(y.data, np.pad(x, ((0, 0), (1, 2), (3, 0), (0, 0))))
    (y * y).sum().backward()
    np.testing.assert_allclose(xt.grad, 2 * x, rtol=1e-6)
