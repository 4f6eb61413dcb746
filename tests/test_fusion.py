"""Fused passes: conv + bias + activation in one kernel (issue 9).

The fused result must equal the unfused composition: conv with bias, then the activation.
Native float32 against the float64 oracle: rtol 1e-4, atol 1e-5 * max|ref| (as in
test_native_conv). Gradients through the fused autograd op: float64 central differences on
the numpy backend (rtol 1e-5).
"""
import numpy as np
import pytest

import fastconv as fc
from fastconv import _C, functional as F, reference as R
from fastconv.autograd import Tensor, ops
from fastconv.reference.gradcheck import check_grad

ACTS = ["linear", "relu", "sigmoid", "tanh"]
_NP_ACT = {"linear": lambda z: z, "relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
           "tanh": np.tanh}

# (n, h, w, cin, cout, k, strides, padding, groups): im2col, pointwise, grouped, depthwise paths
CASES = [(2, 9, 7, 3, 5, 3, 1, "same", 1), (1, 5, 6, 4, 6, 1, 1, "valid", 1), (2, 8, 8, 4, 6, 3, 2, "same", 2),
         (2, 7, 9, 3, 3, 3, 1, "same", 3), (3, 4, 4, 2, 8, 2, 1, "same", 1)]


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("case", CASES)
def test_fused_conv_activation_matches_the_composition(act, case):
    n, h, w, cin, cout, k, s, padding, groups = case
    rng = np.random.default_rng(hash((act, case)) % 2**32)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((k, k, cin // groups, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    conv = dict(strides=s, padding=padding, groups=groups)
    with fc.backend("numpy"):
        ref = _NP_ACT[act](F.conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), **conv))
        _close(F.conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), activation=act, **conv), ref)
    _close(F.conv2d(x, wt, b, activation=act, **conv), ref)


def test_fused_conv_activation_validates_the_name():
    x, w = np.ones((1, 4, 4, 1), np.float32), np.ones((3, 3, 1, 2), np.float32)
    with pytest.raises(ValueError, match="activation"):
        F.conv2d(x, w, activation="gelu")
    with pytest.raises(ValueError, match="activation"):
        _C.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, "swish")
    with pytest.raises(TypeError, match="activation"):
        _C.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, 3)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
def test_fused_conv_activation_gradients(act):
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 5, 4, 2)), rng.standard_normal((3, 2, 2, 3)), rng.standard_normal(3)
    conv = dict(strides=(2, 1), padding="same", activation=act)
    with fc.backend("numpy"):
        dy = rng.standard_normal(F.conv2d(x, w, b, **conv).shape)
        tx, tw, tb = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
        (ops.conv2d(tx, tw, tb, **conv) * Tensor(dy)).sum().backward()

        def loss(i):
            def f(value):
                args = [x, w, b]
                args[i] = value
                return float((F.conv2d(*args, **conv) * dy).sum())
            return f
        for i, (arr, t) in enumerate([(x, tx), (w, tw), (b, tb)]):
            check_grad(loss(i), arr, t.grad, name=f"input {i}", skip_kinks=act == "relu", rtol=1e-5, atol=1e-7)


def test_conv2d_layer_runs_its_activation_inside_the_kernel(monkeypatch):
    calls = []
    monkeypatch.setattr(ops, "bias_activation", lambda *a, **k: calls.append(a) or a[0])
    layer = fc.layers.Conv2D(4, 3, padding="same", activation="relu")
    y = layer(np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32))
    assert not calls and float(y.data.min()) >= 0.0
