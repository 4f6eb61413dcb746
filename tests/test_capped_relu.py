"""ReLU(max_value) as one op (ops.capped_relu, used by layers.ReLU for ReLU6 and kin).

Forward against NumPy (min(max(x, 0), cap), exact: a clip); gradient against the composition it
replaced (ops.relu then ops.minimum), including inputs exactly at 0, exactly at the cap, above
it and NaN; the layer keeps float32. Batch-norm inference's gradient, which now builds its
normalised input only in backward, is checked against the closed form.
"""
import numpy as np

import fastconv
from fastconv import layers
from fastconv.autograd import Tensor, ops


def _inputs():
    x = np.random.default_rng(7).uniform(-3, 9, (4, 5, 6)).astype(np.float32)
    x[0, 0, :4] = [0.0, 6.0, -0.0, 6.5]
    return x


def test_forward_matches_numpy_and_keeps_float32():
    x = _inputs()
    y = layers.ReLU(max_value=6.0)(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(y), np.minimum(np.maximum(x, 0), 6).astype(np.float32))


def test_gradient_matches_relu_then_minimum():
    x = _inputs()
    g = np.random.default_rng(8).standard_normal(x.shape).astype(np.float32)
    new = Tensor(x.copy(), requires_grad=True)
    (ops.capped_relu(new, 6.0) * Tensor(g)).sum().backward()
    old = Tensor(x.copy(), requires_grad=True)
    (ops.minimum(ops.relu(old), 6.0) * Tensor(g)).sum().backward()
    np.testing.assert_array_equal(np.asarray(new.grad), np.asarray(old.grad))
    # and the mask it is: 0 < x <= 6
    np.testing.assert_array_equal(np.asarray(new.grad), g * ((x > 0) & (x <= 6)))


def test_nan_propagates():
    x = _inputs()
    x[1, 2, 3] = np.nan
    y = np.asarray(layers.ReLU(max_value=6.0)(x))
    assert np.isnan(y[1, 2, 3]) and np.isnan(y).sum() == 1


def test_batch_norm_inference_gradient_closed_form():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4, 5)).astype(np.float64)
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    mean, var = rng.standard_normal(5), rng.uniform(0.5, 2, 5)
    g = rng.standard_normal(x.shape)
    for relu in (False, True):
        xt, gt, bt = (Tensor(v.copy(), requires_grad=True) for v in (x, gamma, beta))
        y = fastconv.autograd.ops.nn.BatchNormInference.apply(xt, gt, bt, mean=mean, var=var, epsilon=1e-3, relu=relu)
        (y * Tensor(g)).sum().backward()
        xhat = (x - mean) / np.sqrt(var + 1e-3)
        gm = g * (xhat * gamma + beta > 0) if relu else g
        np.testing.assert_allclose(np.asarray(xt.grad), gm * gamma / np.sqrt(var + 1e-3), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(gt.grad), (gm * xhat).sum(axis=(0, 1)), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(bt.grad), gm.sum(axis=(0, 1)), rtol=1e-12)
