"""fastconv against values computed by TensorFlow/Keras and PyTorch (tests/golden/, made by
tests/golden/make_golden.py where those are installed; CI needs neither).

Every case runs on the oracle (numpy backend, float64) and on every backend: cpu and cuda (the
latter on the CPU emulation of tests/cuda_emulation.py, and on a GPU under `-m gpu`).
Tolerances, with scale = max(1, max|expected|):
- oracle, float64: rtol 1e-7, atol 1e-7 * scale (the peers computed in float64 too; this only
  allows for summation order);
- cpu and cuda, float32: rtol 1e-4, atol 1e-5 * scale (float32 rounding over short sums);
- optimizers (Keras runs them in float32): rtol 1e-5, atol 1e-6 * scale on every backend.
"""
import numpy as np
import pytest

import fastconv
from fastconv import functional as F
from fastconv import losses, optimizers
from fastconv import reference as R
from fastconv.autograd import Tensor, Variable, ops

import cuda_emulation
import goldens

_gpu_reason = ""
try:
    fastconv.cuda.require()
except RuntimeError as e:
    _gpu_reason = str(e)


@pytest.fixture(params=["numpy", "cpu", "cuda-emulated", pytest.param("cuda-gpu", marks=pytest.mark.gpu)])
def backend(request, monkeypatch):
    """The backend name; inside the test that backend is active."""
    name = request.param
    if name == "cuda-gpu" and _gpu_reason:
        pytest.skip(_gpu_reason)
    if name == "cuda-emulated":
        cuda_emulation.install(monkeypatch)
    with fastconv.backend(name.split("-")[0]):
        yield name.split("-")[0]


def put(a, backend):
    """An input as the backend takes it: float64 for the oracle, float32 otherwise."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        a = a.astype(np.float64 if backend == "numpy" else np.float32)
    return fastconv.cuda.to_device(a) if backend == "cuda" else a


def get(a):
    return fastconv.cuda.to_host(a.data if isinstance(a, Tensor) else a)


def check(got, want, backend, what):
    got = np.asarray(get(got), np.float64)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    rtol, atol = (1e-7, 1e-7 * scale) if backend == "numpy" else (1e-4, 1e-5 * scale)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def _ids(cases):
    return [c["name"] for c in cases]


# ------------------------------------------------------------------------------ convolution
CONV = goldens.cases("conv")
DEPTHWISE = goldens.cases("depthwise")


@pytest.mark.parametrize("case", CONV, ids=_ids(CONV))
def test_conv2d_forward_and_gradients(case, backend):
    verify_conv(case, *goldens.load(case), backend)


def verify_conv(case, inp, want, backend):
    x, w, b, dy = (put(inp[k], backend) for k in ("x", "w", "b", "dy"))
    kw = dict(strides=case["s"], padding=case["pad"], dilation_rate=case["d"], groups=case["g"])
    check(F.conv2d(x, w, b, **kw), want["y"], backend, "y")
    dx, dw, db = F.conv2d_backward(dy, x, w, **kw)
    for got, k in ((dx, "dx"), (dw, "dw"), (db, "db")):
        check(got, want[k], backend, k)


@pytest.mark.parametrize("case", DEPTHWISE, ids=_ids(DEPTHWISE))
def test_depthwise_conv2d_forward_and_gradients(case, backend):
    verify_depthwise(case, *goldens.load(case), backend)


def verify_depthwise(case, inp, want, backend):
    x, w, b, dy = (put(inp[k], backend) for k in ("x", "w", "b", "dy"))
    kw = dict(strides=case["s"], padding=case["pad"], dilation_rate=case["d"])
    check(F.depthwise_conv2d(x, w, b, **kw), want["y"], backend, "y")
    dx, dw, db = F.depthwise_conv2d_backward(dy, x, w, **kw)
    for got, k in ((dx, "dx"), (dw, "dw"), (db, "db")):
        check(got, want[k], backend, k)
    # the same layer as a grouped conv2d (groups = C, Keras's kernel reshaped, DESIGN.md)
    kh, kw_, c, m = inp["w"].shape
    wg = put(inp["w"].reshape(kh, kw_, 1, c * m), backend)
    check(F.conv2d(x, wg, b, groups=c, **kw), want["y"], backend, "grouped y")
    _, dwg, _ = F.conv2d_backward(dy, x, wg, groups=c, **kw)
    check(get(dwg).reshape(kh, kw_, c, m), want["dw"], backend, "grouped dw")


@pytest.mark.parametrize("case", CONV + DEPTHWISE, ids=_ids(CONV + DEPTHWISE))
def test_naive_loop_oracle(case):
    # the oracle of the oracle (plain loops), in float64 on the same inputs
    inp, want = goldens.load(case)
    x, w, b = (inp[k].astype(np.float64) for k in ("x", "w", "b"))
    groups = case.get("g", x.shape[-1])
    if case["kind"] == "depthwise":
        w = w.reshape(w.shape[0], w.shape[1], 1, -1)
    s, d = (case["s"],) * 2, (case["d"],) * 2
    pads = F.resolve_padding(case["pad"], x.shape[1:3], w.shape[:2], s, d)
    check(R.conv2d_forward_naive(x, w, b, s, pads, d, groups), want["y"], "numpy", "naive y")


# ------------------------------------------------------------------------------ pooling
POOL = goldens.cases("pool")


@pytest.mark.parametrize("case", POOL, ids=_ids(POOL))
def test_pool_forward_and_gradient(case, backend):
    verify_pool(case, *goldens.load(case), backend)


def verify_pool(case, inp, want, backend):
    x, dy = put(inp["x"], backend), put(inp["dy"], backend)
    kw = dict(pool_size=case["p"], strides=case["s"], padding=case["pad"])
    if case["op"] == "max":
        check(F.max_pool2d(x, **kw), want["y"], backend, "y")
        check(F.max_pool2d_backward(dy, x, **kw), want["dx"], backend, "dx")
        y, argmax = F.max_pool2d_with_argmax(x, **kw)
        check(y, want["y"], backend, "y (with argmax)")
        if argmax is not None:  # backends with the kernel
            check(F.max_pool2d_backward_argmax(dy, argmax, inp["x"].shape, **kw), want["dx"], backend, "dx (argmax)")
    else:
        check(F.avg_pool2d(x, **kw), want["y"], backend, "y")
        check(F.avg_pool2d_backward(dy, inp["x"].shape, **kw), want["dx"], backend, "dx")


# ------------------------------------------------------------------------------ batch norm
BATCHNORM = goldens.cases("batchnorm")


@pytest.mark.parametrize("case", BATCHNORM, ids=_ids(BATCHNORM))
def test_batch_norm_matches_keras(case, backend):
    verify_batch_norm(case, *goldens.load(case), backend)


def verify_batch_norm(case, inp, want, backend):
    x, gamma, beta, dy = (put(inp[k], backend) for k in ("x", "gamma", "beta", "dy"))
    if case["training"]:
        y, mean, var, inv_std = F.batch_norm_train(x, gamma, beta, 1e-3)
        check(y, want["y"], backend, "y")
        # Keras's moving update, moving * 0.99 + batch * 0.01, with the biased batch variance
        for got, k in ((mean, "moving_mean"), (var, "moving_var")):
            check(0.99 * inp[k].astype(np.float64) + 0.01 * get(got), want[k], backend, k)
        for got, k in zip(F.batch_norm_backward(dy, x, gamma, mean, inv_std), ("dx", "dgamma", "dbeta")):
            check(got, want[k], backend, k)
    else:
        check(F.batch_norm_inference(x, gamma, beta, put(inp["moving_mean"], backend),
                                     put(inp["moving_var"], backend), 1e-3), want["y"], backend, "y")
    # the autograd op (Keras defaults): its moving Variables are updated in place in training
    xt, gt, bt = Tensor(x, requires_grad=True), Variable(gamma), Variable(beta)
    mm, mv = Variable(put(inp["moving_mean"], backend)), Variable(put(inp["moving_var"], backend))
    y = ops.batch_norm(xt, gt, bt, mm, mv, training=case["training"])
    check(y, want["y"], backend, "autograd y")
    (y * Tensor(dy)).sum().backward()
    for got, k in ((xt.grad, "dx"), (gt.grad, "dgamma"), (bt.grad, "dbeta"), (mm.data, "moving_mean"),
                   (mv.data, "moving_var")):
        check(got, want[k], backend, "autograd " + k)


# ------------------------------------------------------------------------------ cross-entropy
XENT = goldens.cases("xent")


@pytest.mark.parametrize("case", XENT, ids=_ids(XENT))
def test_sparse_softmax_cross_entropy_from_logits(case, backend):
    verify_xent(case, *goldens.load(case), backend)


def verify_xent(case, inp, want, backend):
    logits, dloss = put(inp["logits"], backend), put(inp["dloss"], backend)
    labels = put(inp["labels"], backend)
    loss, probs = F.softmax_cross_entropy(logits, labels)
    check(loss, want["loss"], backend, "loss")
    check(F.softmax_cross_entropy_backward(probs, labels, dloss), want["dlogits"], backend, "dlogits")
    if "mean_loss" not in want:
        return
    # Keras's SparseCategoricalCrossentropy(from_logits=True): the batch mean and its gradient
    lt = Tensor(logits, requires_grad=True)
    mean = losses.SparseCategoricalCrossentropy(from_logits=True)(labels, lt)
    check(mean, want["mean_loss"], backend, "mean loss")
    mean.backward()
    check(lt.grad, want["dlogits_mean"], backend, "dlogits of the mean")


# ------------------------------------------------------------------------------ optimizers
OPTIMIZERS = goldens.cases("optimizer")


class _Var:
    def __init__(self, data):
        self.data, self.name = data, "w"


@pytest.mark.parametrize("case", OPTIMIZERS, ids=_ids(OPTIMIZERS))
def test_optimizer_steps_match_keras(case, backend):
    verify_optimizer(case, *goldens.load(case), backend)


def verify_optimizer(case, inp, want, backend):
    # float32 everywhere (Keras's variables are float32); the cpu and cuda backends take their
    # fused update kernels, the numpy backend the array formulas
    opt = getattr(optimizers, case["cls"])(**case["kw"])
    dev = fastconv.cuda.to_device if backend == "cuda" else np.asarray
    var = _Var(dev(inp["w0"].astype(np.float32)))
    for step, g in enumerate(inp["grads"]):
        opt.apply_gradients([(dev(g.astype(np.float32)), var)])
        got = get(var.data)
        scale = max(1.0, float(np.abs(want["w"][step]).max()))
        np.testing.assert_allclose(got, want["w"][step], rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=f"{case['name']} step {step + 1}")


# ------------------------------------------------------------------------------ padding geometry
@pytest.mark.parametrize("backend_name", ["numpy", "cpu"])
def test_padding_tables_through_conv2d(backend_name):
    # For each (n, k, s, d) TensorFlow's conv2d read cell table[o, j] (1-based, 0 = padding) at
    # tap j of output o; the same probe (x = 1..n, tap j -> channel j) through fastconv's conv2d.
    with fastconv.backend(backend_name):
        for (n, k, s, d, padding), table in goldens.padding_tables():
            x = np.arange(1, n + 1, dtype=np.float32).reshape(1, n, 1, 1)
            w = np.zeros((k, 1, 1, k), np.float32)
            w[np.arange(k), 0, 0, np.arange(k)] = 1.0
            y = F.conv2d(x, w, strides=(s, 1), padding=padding, dilation_rate=(d, 1))
            np.testing.assert_array_equal(np.rint(y[0, :, 0, :]), table, err_msg=f"{(n, k, s, d, padding)}")
