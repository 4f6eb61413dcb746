"""Batch-1 paths that exist only to cut per-call overhead (issue 18 item 4), against the
float64 NumPy reference: the dense kernel's one-row matrix-vector product and its fused
activation, OpenMP regions of one thread run inline, and the inference plan's hot path (the
model's last input shape) when the shape, the weights, the layers or the settings change
between calls."""
import numpy as np
import pytest

import fastconv
from fastconv import _C, layers
from fastconv import reference as R
from fastconv.engine import inference
from fastconv.models import zoo


def _close(got, ref, tol=1e-5):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=tol, atol=tol * scale)


# ---- dense at one row -------------------------------------------------------------------

# m around the register width (16) and the 8-register chunk (128), k odd; the last case has
# more weights than the matrix-vector path takes (k * m > 2**18: the GEMM).
@pytest.mark.parametrize("k,m", [(1, 1), (7, 3), (13, 15), (400, 16), (9, 17), (120, 84), (400, 120),
                                 (33, 128), (5, 129), (31, 300), (700, 400)])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_one_row_matches_the_reference(k, m, bias):
    rng = np.random.default_rng(k * 1000 + m)
    x = rng.standard_normal((1, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    ref = R.dense_forward(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64))
    _close(_C.dense_forward(x, w, b), ref, tol=1e-5 * max(1.0, np.sqrt(k) / 4))


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
def test_dense_activation_matches_the_reference(n, activation):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, 37)).astype(np.float32)
    w = (rng.standard_normal((37, 21)) / 6).astype(np.float32)
    b = rng.standard_normal(21).astype(np.float32)
    got = _C.dense_forward(x, w, b, activation)
    ref = R.dense_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), activation)
    _close(got, ref)
    # relu6 (no reference name): the relu output capped at 6
    if activation == "relu":
        capped = _C.dense_forward(x * 8, w, b, "relu6")
        _close(capped, np.minimum(R.dense_forward((x * 8).astype(np.float64), w.astype(np.float64),
                                                  b.astype(np.float64), "relu"), 6.0))


def test_dense_activation_errors():
    x, w = np.zeros((1, 3), np.float32), np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="activation"):
        _C.dense_forward(x, w, None, "softmax")
    with pytest.raises(TypeError, match="activation"):
        _C.dense_forward(x, w, None, 1)
    with pytest.raises(ValueError, match="activation"):
        R.dense_forward(x, w, None, "gelu")


# ---- one-thread regions run inline --------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_agree_across_thread_counts_at_batch_one(threads):
    """The same pool, activation, softmax and conv at 1 and 2 threads (a region of one thread
    runs on the calling thread; a large one still splits), against the reference."""
    rng = np.random.default_rng(3)
    old = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        for shape in [(1, 9, 11, 6), (3, 64, 64, 32)]:  # below and above the parallel grain
            x = rng.standard_normal(shape).astype(np.float32)
            _close(_C.avg_pool2d_forward(x, (2, 2), (2, 2), (0, 0, 0, 0)),
                   R.avg_pool2d_forward(x.astype(np.float64), (2, 2), (2, 2), (0, 0, 0, 0)))
            _close(_C.bias_act_forward(x, None, "sigmoid"), R.bias_act_forward(x.astype(np.float64), None, "sigmoid"))
            flat = x.reshape(-1, shape[-1])
            _close(_C.softmax_forward(flat), R.softmax_forward(flat.astype(np.float64)))
            w = (rng.standard_normal((3, 3, shape[-1], 5)) / 10).astype(np.float32)
            _close(_C.conv2d_forward(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu"),
                   R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, (1, 1), (1, 1, 1, 1), (1, 1),
                                    1, "relu"), tol=1e-4)
    finally:
        fastconv.set_num_threads(old)


# ---- the inference plan's hot path --------------------------------------------------------

def _oracle(model, x):
    with fastconv.backend("numpy"):
        return np.asarray(model.predict_on_batch(x))


def _check(model, x):
    ref = _oracle(model, x)
    _close(model.predict_on_batch(x), ref, tol=1e-4)
    _close(model.predict(x, verbose=0), ref, tol=1e-4)
    with fastconv.no_grad():
        _close(model(x, training=False).data, ref, tol=1e-4)


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_hot_path_follows_shape_changes(variant):
    fastconv.set_seed(1)
    model = zoo.lenet5(variant=variant)
    rng = np.random.default_rng(2)
    for batch in (1, 1, 3, 1, 2, 1):
        _check(model, rng.standard_normal((batch, 28, 28, 1)).astype(np.float32))
    assert model._inference_last[0] == (1, 28, 28, 1)


def test_hot_path_follows_weight_changes():
    fastconv.set_seed(2)
    model = zoo.lenet5()
    x = np.random.default_rng(4).standard_normal((1, 28, 28, 1)).astype(np.float32)
    _check(model, x)
    before = model.predict_on_batch(x)
    rng = np.random.default_rng(5)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    _check(model, x)
    assert not np.allclose(model.predict_on_batch(x), before)
    # a training step changes the weights in place (optimizer updates)
    model.compile("sgd", fastconv.losses.SparseCategoricalCrossentropy())
    model.fit(rng.standard_normal((4, 28, 28, 1)).astype(np.float32), np.arange(4) % 10, epochs=1, verbose=0)
    _check(model, x)
    for layer in model.layers:
        layer.trainable = False
    _check(model, x)


def test_hot_path_follows_batch_norm_changes():
    fastconv.set_seed(3)
    model = fastconv.models.Sequential([layers.Input((9, 7, 3)), layers.Conv2D(4, 3), layers.BatchNormalization(),
                                        layers.ReLU(), layers.GlobalAveragePooling2D(), layers.Dense(2)])
    x = np.random.default_rng(6).standard_normal((1, 9, 7, 3)).astype(np.float32)
    _check(model, x)
    bn = model.layers[1]
    bn.moving_mean.assign(np.full(4, 0.7, np.float32))
    bn.moving_variance.assign(np.full(4, 2.5, np.float32))
    _check(model, x)


def test_hot_path_follows_layer_changes():
    fastconv.set_seed(4)
    model = fastconv.models.Sequential([layers.Input((6, 6, 2)), layers.Conv2D(3, 3, activation="relu"),
                                        layers.Flatten(), layers.Dense(5)])
    x = np.random.default_rng(7).standard_normal((1, 6, 6, 2)).astype(np.float32)
    _check(model, x)
    model.add(layers.Dense(2, activation="tanh"))
    assert model.predict_on_batch(x).shape == (1, 2)
    _check(model, x)
    model.pop()
    assert model.predict_on_batch(x).shape == (1, 5)
    _check(model, x)


def test_hot_path_takes_other_inputs_through_the_full_path():
    fastconv.set_seed(5)
    model = zoo.lenet5()
    x = np.random.default_rng(8).standard_normal((1, 28, 28, 1)).astype(np.float32)
    _check(model, x)
    ref = _oracle(model, x)
    _close(model.predict_on_batch(x.astype(np.float64)), ref, tol=1e-4)
    wide = np.zeros((1, 28, 56, 1), np.float32)
    wide[..., ::2, :] = x
    _close(model.predict_on_batch(wide[:, :, ::2, :]), ref, tol=1e-4)  # not C-contiguous
    _close(model.predict_on_batch([x]), ref, tol=1e-4)


def test_hot_path_respects_the_switches(monkeypatch):
    fastconv.set_seed(6)
    model = zoo.lenet5()
    x = np.random.default_rng(9).standard_normal((1, 28, 28, 1)).astype(np.float32)
    ref = _oracle(model, x)
    model.predict_on_batch(x)

    def refuse(self, arrays):
        raise AssertionError("the plan ran")
    monkeypatch.setattr(inference.Plan, "run", refuse)
    for off in (lambda: fastconv.set_inference_plan(False), lambda: fastconv.set_fusion(False)):
        off()
        try:
            _close(model.predict_on_batch(x), ref, tol=1e-4)
        finally:
            fastconv.set_inference_plan(True)
            fastconv.set_fusion(True)
    with pytest.raises(AssertionError, match="the plan ran"):
        model.predict_on_batch(x)


def test_fallback_steps_run_without_a_tape():
    """A layer the plan runs as itself still runs under no_grad on the hot path."""
    seen = []

    class Probe(layers.Layer):
        def call(self, x):
            seen.append(fastconv.autograd.is_grad_enabled())
            return x * 2.0

    model = fastconv.models.Sequential([layers.Input((4,)), layers.Dense(3), Probe()])
    x = np.random.default_rng(10).standard_normal((1, 4)).astype(np.float32)
    for _ in range(3):
        _close(model.predict_on_batch(x), _oracle(model, x), tol=1e-5)
    assert seen and not any(seen)


@pytest.mark.parametrize("bias", [True, False])
def test_cuda_dense_activation_on_the_emulated_device(monkeypatch, bias):
    """The cuda backend's dense_forward takes the same activation (its kernels emulated)."""
    import cuda_emulation
    from fastconv import cuda as fcuda
    fake = cuda_emulation.install(monkeypatch)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 11)).astype(np.float32)
    w = (rng.standard_normal((11, 7)) / 3).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32) if bias else None
    for activation in ("linear", "relu", "sigmoid", "tanh"):
        got = cuda_emulation.host(fcuda.dense_forward(fake.asarray(x), fake.asarray(w),
                                                      None if b is None else fake.asarray(b), activation))
        _close(got, R.dense_forward(x.astype(np.float64), w.astype(np.float64),
                                    None if b is None else b.astype(np.float64), activation))
    with pytest.raises(ValueError, match="activation"):
        fcuda.dense_forward(fake.asarray(x), fake.asarray(w), None, "gelu")
