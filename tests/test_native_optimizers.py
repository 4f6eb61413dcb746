"""Fused native optimizer updates (fastconv._C.*_update, used on the cpu backend for float32
C-contiguous arrays) against the optimizers' NumPy formulas in float32 (the numpy backend),
several steps; and the bindings' argument checks."""
import types

import numpy as np
import pytest

import fastconv
from fastconv import _C, optimizers

CASES = [
    ("sgd_update", lambda: optimizers.SGD(0.1)),
    ("sgd_update", lambda: optimizers.SGD(0.1, momentum=0.9)),
    ("sgd_update", lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam_update", lambda: optimizers.Adam(0.01)),
    ("adam_update", lambda: optimizers.Adam(0.01, beta_1=0.5, beta_2=0.6, epsilon=1e-3, amsgrad=True)),
    ("adam_update", lambda: optimizers.AdamW(0.01, weight_decay=0.05)),
    ("rmsprop_update", lambda: optimizers.RMSprop(0.01)),
    ("rmsprop_update", lambda: optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True)),
    ("adagrad_update", lambda: optimizers.Adagrad(0.1, weight_decay=0.1)),
]


def run(make, backend, shapes, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    params = [types.SimpleNamespace(data=rng.standard_normal(s).astype(np.float32)) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(steps)]
    opt = make()
    with fastconv.backend(backend):
        for gs in grads:
            opt.apply_gradients(zip(gs, params))
    return [p.data for p in params], opt


@pytest.mark.parametrize("kernel,make", CASES)
def test_fused_matches_numpy_formulas(kernel, make, monkeypatch):
    shapes = [(3, 5, 7), (1,), (40000,)]  # the last one is above kParallelGrain (threads)
    want, _ = run(make, "numpy", shapes)
    calls = []
    native = getattr(_C, kernel)
    monkeypatch.setattr(_C, kernel, lambda *a, **k: (calls.append(1), native(*a, **k))[1])
    got, opt = run(make, "cpu", shapes)
    assert len(calls) == 5 * len(shapes)  # the fused kernel ran every step
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


def test_float64_and_views_keep_numpy_path(monkeypatch):
    monkeypatch.setattr(_C, "sgd_update", lambda *a, **k: pytest.fail("native path taken"))
    var = types.SimpleNamespace(data=np.ones(6))  # float64
    optimizers.SGD(0.1, momentum=0.9).apply_gradients([(np.ones(6), var)])
    np.testing.assert_allclose(var.data, 0.9)
    base = np.ones((4, 6), np.float32)
    view = types.SimpleNamespace(data=base[:, ::2])  # not contiguous
    optimizers.SGD(0.1).apply_gradients([(np.ones((4, 3), np.float32), view)])
    np.testing.assert_allclose(base[:, ::2], 0.9)


def test_bindings_check_arguments():
    w, g = np.zeros(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(TypeError, match="w must have dtype float32"):
        _C.sgd_update(np.zeros(4), g, None, 0.1)
    with pytest.raises(ValueError, match="g must have shape"):
        _C.sgd_update(w, np.ones(5, np.float32), None, 0.1)
    with pytest.raises(TypeError, match="velocity must be C-contiguous"):
        _C.sgd_update(w, g, np.zeros(8, np.float32)[::2], 0.1, 0.9)
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="w must be writeable"):
        _C.sgd_update(ro, g, None, 0.1)
    with pytest.raises(ValueError, match="m must be writeable"):
        _C.adam_update(w, g, ro, w.copy(), 0.1, 0.9, 0.999, 1e-7)
    with pytest.raises(ValueError, match="v_hat must have shape"):
        _C.adam_update(w, g, w.copy(), w.copy(), 0.1, 0.9, 0.999, 1e-7, np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="accumulator must be a numpy.ndarray"):
        _C.adagrad_update(w, g, [0.0] * 4, 0.1, 1e-7)


def test_parallel_copy():
    src = np.arange(300001, dtype=np.float32)
    dst = np.empty_like(src)
    _C.parallel_copy(dst, src)
    np.testing.assert_array_equal(dst, src)
    with pytest.raises(ValueError, match="bytes"):
        _C.parallel_copy(dst[:5], src)
