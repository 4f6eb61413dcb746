"""The cuda backend's suite: every CUDA kernel against the NumPy oracle on random shapes,
determinism of the gather/reduction kernels, and models trained on cpu and cuda giving the
same losses. Each test runs twice:

- "gpu" (marked `gpu`, so `pytest -m gpu` selects it): on a real GPU, skipped when CuPy,
  fastconv._cuda or a GPU is missing;
- "emulated": on the CPU, through tests/cuda_emulation.py (the same .cu kernels compiled for
  the host, a strict NumPy-backed CuPy), so CI runs this suite too.
"""
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastconv
from fastconv import cuda as fcuda
from fastconv import reference as R

import cuda_emulation
from test_native_conv import conv_configs

_reason = ""
try:
    fcuda.require()
except RuntimeError as e:
    _reason = str(e)


@pytest.fixture(autouse=True, params=[pytest.param("gpu", marks=pytest.mark.gpu), "emulated"])
def device(request, monkeypatch):
    if request.param == "gpu":
        if _reason:
            pytest.skip(_reason)
    else:
        cuda_emulation.install(monkeypatch)
    return request.param


TOL = dict(rtol=1e-4, atol=1e-4)


def dev(a):
    return fcuda.to_device(np.ascontiguousarray(a, np.float32))


def host(a):
    return fcuda.to_host(a)


def close(got, want, scale=None, rtol=1e-4):
    want = np.asarray(want)
    s = float(np.abs(want).max(initial=0)) if scale is None else scale
    np.testing.assert_allclose(host(got), want, rtol=rtol, atol=rtol * max(s, 1.0))


# (x_shape, w_shape, strides, pads, dilation, groups): plain, strided/padded/dilated,
# pointwise (GEMM only), grouped, depthwise (M = 1 and 2), and a ResNet stem-like layer.
CONV_CASES = [
    ((2, 9, 8, 3), (3, 3, 3, 5), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 11, 10, 4), (3, 2, 4, 6), (2, 3), (0, 2, 1, 0), (2, 1), 1),
    ((3, 7, 7, 16), (1, 1, 16, 8), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((2, 8, 9, 6), (3, 3, 2, 9), (1, 2), (1, 1, 1, 1), (1, 1), 3),
    ((2, 10, 10, 5), (3, 3, 1, 5), (2, 2), (0, 1, 0, 1), (1, 1), 5),
    ((2, 9, 9, 4), (5, 3, 1, 8), (1, 1), (2, 2, 1, 1), (1, 2), 4),
    ((4, 32, 32, 3), (7, 7, 3, 16), (2, 2), (2, 3, 2, 3), (1, 1), 1),
]


@pytest.mark.parametrize("xs,ws,strides,pads,dil,groups", CONV_CASES)
@pytest.mark.parametrize("chunked", [False, True])
def test_conv2d_forward_and_backward_match_the_oracle(xs, ws, strides, pads, dil, groups, chunked, monkeypatch):
    if chunked:  # one image per im2col chunk: the chunk loop must tile the batch exactly
        monkeypatch.setattr(fcuda, "_workspace_limit", 1)
    rng = np.random.default_rng(len(xs) + ws[0] * 7 + groups)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[3])
    want = R.conv2d_forward(x, w, b, strides, pads, dil, groups)
    close(fcuda.conv2d_forward(dev(x), dev(w), dev(b), strides, pads, dil, groups), want)
    dy = rng.standard_normal(want.shape)
    close(fcuda.conv2d_backward_data(dev(dy), dev(w), xs, strides, pads, dil, groups),
          R.conv2d_backward_data(dy, w, xs, strides, pads, dil, groups))
    dw, db = fcuda.conv2d_backward_weights(dev(dy), dev(x), ws, strides, pads, dil, groups, True)
    want_dw, want_db = R.conv2d_backward_weights(dy, x, ws, strides, pads, dil, groups, True)
    close(dw, want_dw)
    close(db, want_db)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conv_configs(), st.booleans(), st.integers(0, 2**32 - 1))
def test_conv_random_shapes_match_the_oracle(cfg, chunked, seed):
    # odd sizes, batch 1, stride > kernel, even kernels, dilation, groups, depthwise
    n, h, w, cin_g, cout_g, groups, k, strides, pads, dil = cfg
    xs, ws = (n, h, w, cin_g * groups), (k[0], k[1], cin_g, cout_g * groups)
    rng = np.random.default_rng(seed)
    x, wt, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[3])
    limit = fcuda._workspace_limit
    try:
        if chunked:
            fcuda.set_workspace_limit(1)
        want = R.conv2d_forward(x, wt, b, strides, pads, dil, groups)
        close(fcuda.conv2d_forward(dev(x), dev(wt), dev(b), strides, pads, dil, groups), want)
        dy = rng.standard_normal(want.shape)
        close(fcuda.conv2d_backward_data(dev(dy), dev(wt), xs, strides, pads, dil, groups),
              R.conv2d_backward_data(dy, wt, xs, strides, pads, dil, groups))
        for got, ref in zip(fcuda.conv2d_backward_weights(dev(dy), dev(x), ws, strides, pads, dil, groups, True),
                            R.conv2d_backward_weights(dy, x, ws, strides, pads, dil, groups, True)):
            close(got, ref)
    finally:
        fcuda.set_workspace_limit(limit)


def test_bad_arguments_are_value_errors_naming_them():
    with pytest.raises(ValueError, match="channel mismatch"):
        fcuda.conv2d_forward(dev(np.zeros((1, 4, 4, 3))), dev(np.zeros((3, 3, 2, 4))), None, (1, 1), (0,) * 4, (1, 1), 1)
    x = dev(np.zeros((2, 6, 6, 4)))
    with pytest.raises(ValueError, match="gamma must have shape"):
        fcuda.batch_norm_forward_train(x, dev(np.ones(3)), dev(np.zeros(4)), 1e-3)
    with pytest.raises(ValueError, match="activation must be one of"):
        fcuda.bias_act_forward(x, None, "gelu")
    with pytest.raises(ValueError, match="dy must have shape"):
        fcuda.max_pool2d_backward(dev(np.zeros((1, 3, 3, 4))), x, (2, 2), (2, 2), (0,) * 4)


@pytest.mark.parametrize("n,k,m", [(1, 1, 1), (17, 33, 9), (64, 256, 10)])
def test_dense_matches_the_oracle(n, k, m):
    rng = np.random.default_rng(n + k + m)
    x, w, b = rng.standard_normal((n, k)), rng.standard_normal((k, m)), rng.standard_normal(m)
    close(fcuda.dense_forward(dev(x), dev(w), dev(b)), R.dense_forward(x, w, b))
    dy = rng.standard_normal((n, m))
    for got, want in zip(fcuda.dense_backward(dev(dy), dev(x), dev(w)), R.dense_backward(dy, x, w)):
        close(got, want)


POOL_CASES = [((2, 8, 8, 3), (2, 2), (2, 2), (0, 0, 0, 0)), ((2, 9, 7, 5), (3, 3), (2, 2), (1, 1, 1, 1)),
              ((1, 6, 11, 4), (3, 2), (1, 3), (2, 0, 1, 1)), ((2, 112, 112, 64), (3, 3), (2, 2), (0, 1, 0, 1))]


@pytest.mark.parametrize("xs,pool,strides,pads", POOL_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_pooling_matches_the_oracle(xs, pool, strides, pads, ties):
    rng = np.random.default_rng(sum(xs))
    x = (rng.integers(-2, 3, xs) if ties else rng.standard_normal(xs)).astype(np.float32)
    y = R.max_pool2d_forward(x, pool, strides, pads)
    np.testing.assert_array_equal(host(fcuda.max_pool2d_forward(dev(x), pool, strides, pads)), y)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    close(fcuda.max_pool2d_backward(dev(dy), dev(x), pool, strides, pads), R.max_pool2d_backward(dy, x, pool, strides, pads))
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    close(fcuda.avg_pool2d_forward(dev(x), pool, strides, pads), R.avg_pool2d_forward(x64, pool, strides, pads))
    close(fcuda.avg_pool2d_backward(dev(dy), xs, pool, strides, pads), R.avg_pool2d_backward(dy64, xs, pool, strides, pads))
    close(fcuda.global_avg_pool2d_forward(dev(x)), R.global_avg_pool2d_forward(x64))
    g = rng.standard_normal((xs[0], xs[3]))
    close(fcuda.global_avg_pool2d_backward(dev(g), xs), R.global_avg_pool2d_backward(g, xs))


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (4, 7, 7, 33), (64, 28, 28, 16), (3, 1000)])
def test_batch_norm_matches_the_oracle(shape):
    rng = np.random.default_rng(shape[-1])
    x = rng.standard_normal(shape) * 3 + 5  # a mean far from 0 exposes one-pass variance
    c = shape[-1]
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    got = fcuda.batch_norm_forward_train(dev(x), dev(gamma), dev(beta), 1e-3)
    for g_, w_ in zip(got, R.batch_norm_forward_train(x, gamma, beta, 1e-3)):
        close(g_, w_)
    mean, var = rng.standard_normal(c), rng.random(c) + 0.5
    close(fcuda.batch_norm_forward_inference(dev(x), dev(gamma), dev(beta), dev(mean), dev(var), 1e-3),
          R.batch_norm_forward_inference(x, gamma, beta, mean, var, 1e-3))
    dy = rng.standard_normal(shape)
    _, m, _, inv = R.batch_norm_forward_train(x, gamma, beta, 1e-3)
    for g_, w_ in zip(fcuda.batch_norm_backward(dev(dy), dev(x), dev(gamma), dev(m), dev(inv)),
                      R.batch_norm_backward(dy, x, gamma, m, inv)):
        close(g_, w_, rtol=3e-4)


@pytest.mark.parametrize("act", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("shape", [(3, 4), (8, 5, 5, 17), (256, 1024)])
def test_bias_activation_matches_the_oracle(act, shape):
    rng = np.random.default_rng(len(act) + shape[-1])
    x, b = rng.standard_normal(shape) * 3, rng.standard_normal(shape[-1])
    y = R.bias_act_forward(x, b, act)
    close(fcuda.bias_act_forward(dev(x), dev(b), act), y)
    dy = rng.standard_normal(shape)
    y32 = y.astype(np.float32)
    dz, db = fcuda.bias_act_backward(dev(dy), dev(y32), act, True)
    want_dz, want_db = R.bias_act_backward(dy, y32.astype(np.float64), act, True)
    close(dz, want_dz)
    close(db, want_db)


@pytest.mark.parametrize("n,c", [(1, 1), (7, 10), (33, 31), (128, 1000)])
def test_softmax_and_cross_entropy_match_the_oracle(n, c):
    rng = np.random.default_rng(n * c)
    x = rng.standard_normal((n, c)) * 5
    x[0, 0] = 80.0  # exp overflow without the max shift
    y = R.softmax_forward(x)
    close(fcuda.softmax_forward(dev(x)), y)
    dy = rng.standard_normal((n, c))
    close(fcuda.softmax_backward(dev(dy), dev(y)), R.softmax_backward(dy, y))
    labels = rng.integers(0, c, n)
    loss, probs = fcuda.softmax_cross_entropy_forward(dev(x), fcuda.to_device(labels))
    want_loss, want_probs = R.softmax_cross_entropy_forward(x, labels)
    close(loss, want_loss)
    close(probs, want_probs)
    dloss = rng.standard_normal(n)
    close(fcuda.softmax_cross_entropy_backward(dev(want_probs), fcuda.to_device(labels), dev(dloss)),
          R.softmax_cross_entropy_backward(want_probs, labels, dloss))


def test_gathers_and_reductions_are_deterministic():
    rng = np.random.default_rng(0)
    xs, ws = (8, 28, 28, 32), (3, 3, 1, 32)
    x, w = dev(rng.standard_normal(xs)), dev(rng.standard_normal(ws))
    dy = dev(rng.standard_normal((8, 28, 28, 32)))
    args = ((1, 1), (1, 1, 1, 1), (1, 1))
    runs = [(host(fcuda.conv2d_backward_data(dy, w, xs, *args, 32)),
             host(fcuda.conv2d_backward_weights(dy, x, ws, *args, 32, True)[0]),
             host(fcuda.batch_norm_forward_train(x, dev(np.ones(32)), dev(np.zeros(32)), 1e-3)[1]))
            for _ in range(2)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_results_do_not_depend_on_the_order_blocks_run_in(device):
    # On a GPU blocks run in any order and at once; the emulation runs them in order, or in
    # reverse: a kernel whose blocks (or threads) race for an output would change here.
    if device == "gpu":
        pytest.skip("the order of blocks is the emulation's knob")
    K = fcuda._K
    rng = np.random.default_rng(3)
    x, w = dev(rng.standard_normal((3, 13, 11, 8))), dev(rng.standard_normal((3, 3, 1, 16)))
    dy = dev(rng.standard_normal((3, 7, 6, 16)))
    wc = dev(rng.standard_normal((2, 3, 8, 5)))
    logits, labels = dev(rng.standard_normal((19, 37)) * 4), fcuda.to_device(rng.integers(0, 37, 19))
    dpool = dev(rng.standard_normal((3, 6, 5, 8)))
    conv = ((2, 2), (1, 1, 1, 1), (1, 1))

    def run():
        return [host(a) for a in (
            fcuda.conv2d_forward(x, wc, None, (1, 1), (0, 1, 2, 0), (1, 1), 1),
            fcuda.conv2d_backward_data(dy, w, x.shape, *conv, 8),
            *fcuda.conv2d_backward_weights(dy, x, w.shape, *conv, 8, True),
            fcuda.max_pool2d_backward(dpool, x, (3, 3), (2, 2), (0, 1, 0, 1)),
            *fcuda.batch_norm_forward_train(x, dev(np.ones(8)), dev(np.zeros(8)), 1e-3),
            *fcuda.softmax_cross_entropy_forward(logits, labels))]
    forward = run()
    K._set_reverse_order(True)
    try:
        reverse = run()
    finally:
        K._set_reverse_order(False)
    for a, b in zip(forward, reverse):
        np.testing.assert_array_equal(a, b)


def test_backend_functional_api_returns_device_arrays():
    import cupy
    with fastconv.backend("cuda"):
        y = fastconv.functional.conv2d(dev(np.ones((1, 5, 5, 2))), dev(np.ones((3, 3, 2, 4))), padding="same")
    assert isinstance(y, cupy.ndarray)
    assert host(y)[0, 2, 2, 0] == 18.0


def test_tf32_is_off_unless_allowed(device):
    if device == "emulated":
        pytest.skip("TF32 is a property of the GPU's GEMMs")
    # 1 + 2^-12 survives float32 but not TF32's 10-bit mantissa.
    a = dev(np.full((64, 64), 1 + 2.0 ** -12))
    b = dev(np.ones((64, 64)))
    exact = host(fcuda.dense_forward(a, b, None))[0, 0]
    assert exact == np.float32(64 * (1 + 2.0 ** -12))


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_fused_sgd_matches_the_optimizer(momentum, nesterov):
    from fastconv import optimizers
    rng = np.random.default_rng(1)
    w0, grads = rng.standard_normal(1000).astype(np.float32), rng.standard_normal((3, 1000)).astype(np.float32)
    var = types.SimpleNamespace(data=w0.copy(), name="w")
    opt = optimizers.SGD(0.1, momentum=momentum, nesterov=nesterov)
    w, vel = dev(w0), (dev(np.zeros(1000)) if momentum else None)
    for g in grads:
        opt.apply_gradients([(g, var)])
        fcuda.sgd_update(w, dev(g), vel, 0.1, momentum, nesterov)
    np.testing.assert_allclose(host(w), var.data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_fused_adam_matches_the_optimizer(amsgrad):
    from fastconv import optimizers
    rng = np.random.default_rng(2)
    w0, grads = rng.standard_normal(1000).astype(np.float32), rng.standard_normal((3, 1000)).astype(np.float32)
    var = types.SimpleNamespace(data=w0.copy(), name="w")
    opt = optimizers.Adam(0.01, amsgrad=amsgrad)
    w, m, v = dev(w0), dev(np.zeros(1000)), dev(np.zeros(1000))
    v_hat = dev(np.zeros(1000)) if amsgrad else None
    for t, g in enumerate(grads, 1):
        opt.apply_gradients([(g, var)])
        alpha = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        fcuda.adam_update(w, dev(g), m, v, alpha, 0.9, 0.999, 1e-7, v_hat)
    np.testing.assert_allclose(host(w), var.data, rtol=1e-5, atol=1e-6)


def _train_losses(backend, steps=4):
    from fastconv import layers, losses, models, optimizers
    fastconv.set_seed(7)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    model = models.Sequential([
        layers.Input((12, 12, 3)),
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(2),
        layers.DepthwiseConv2D(3, padding="same"),
        layers.Conv2D(6, 1, activation="tanh"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(5),
    ])
    opt, loss_fn = optimizers.Adam(1e-2), losses.SparseCategoricalCrossentropy(from_logits=True)
    with fastconv.backend(backend):
        if backend == "cuda":
            fcuda.model_to_device(model)
            x, y = fcuda.to_device(x), fcuda.to_device(y)
        out = []
        for _ in range(steps):
            loss = loss_fn(y, model(x, training=True))
            for v in model.trainable_weights:
                v.zero_grad()
            loss.backward()
            opt.apply_gradients([(v.grad, v) for v in model.trainable_weights])
            out.append(float(loss.numpy()))
    return out


def test_small_model_trains_to_the_same_losses_on_cpu_and_cuda():
    cpu, gpu = _train_losses("cpu"), _train_losses("cuda")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-4)
    assert gpu[-1] < gpu[0]


def _zoo_steps(name, backend, steps=3, emulated=False):
    """Keras train_step on the backend; on the GPU inside cupyx.allow_synchronize(False), so
    any host read-back in the step (loss, metrics, labels, optimizer) raises. Emulated, the
    steps' host<->device traffic is counted as well (returned, else None)."""
    import contextlib
    from fastconv import models, optimizers
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    with fastconv.backend(backend):
        fastconv.set_seed(0)
        model = getattr(models, name)(input_shape=(32, 32, 3), classes=10)
        model.compile(optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy", ["accuracy"])
        watch = contextlib.nullcontext({})
        if backend == "cuda":
            x, y = fcuda.to_device(x), fcuda.to_device(y)
            import cupyx
            no_sync = cupyx.allow_synchronize(False)
            if emulated:
                import fake_cupy
                watch = fake_cupy.counting()
        else:
            no_sync = contextlib.nullcontext()
        seen = []
        with no_sync, watch as traffic:
            for _ in range(steps):
                model.reset_metrics()
                seen.append(model.train_step(x, y)["loss"])  # left on the device
    return model, [float(v) for v in seen], traffic


@pytest.mark.parametrize("name", ["resnet18", "small_densenet"])
def test_zoo_models_train_on_the_gpu_like_on_the_cpu_without_host_sync(name, device):
    import cupy
    model, gpu, traffic = _zoo_steps(name, "cuda", emulated=device == "emulated")
    assert all(isinstance(v.data, cupy.ndarray) for v in model.weights)
    if device == "emulated":  # the emulation also counts uploads: none inside the steps
        assert traffic == {"to_host": 0, "to_device": 0}
    # The cpu reference runs im2col + GEMM, as the GPU does: Winograd's ~1e-4 relative error
    # is amplified by these few steps (8 samples, momentum 0.9) to ~2% by the third loss.
    previous = fastconv.get_conv_algorithm()
    fastconv.set_conv_algorithm("im2col")
    try:
        _, cpu, _ = _zoo_steps(name, "cpu")
    finally:
        fastconv.set_conv_algorithm(previous)
    np.testing.assert_allclose(gpu, cpu, rtol=2e-3, atol=1e-3)


def test_fit_on_host_arrays_matches_the_cpu():
    from fastconv import layers, losses, models
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((64, 12, 12, 3)).astype(np.float32), rng.integers(0, 5, 64)
    hist = {}
    for backend in ("cpu", "cuda"):
        with fastconv.backend(backend):
            fastconv.set_seed(1)
            model = models.Sequential([layers.Input((12, 12, 3)), layers.Conv2D(8, 3, activation="relu"),
                                       layers.BatchNormalization(), layers.GlobalAveragePooling2D(),
                                       layers.Dense(5)])
            model.compile("adam", losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
            fastconv.set_seed(2)
            hist[backend] = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    for k in hist["cpu"]:
        np.testing.assert_allclose(hist["cuda"][k], hist["cpu"][k], rtol=1e-3, atol=1e-4, err_msg=k)
