"""NaN and Inf propagate as in TensorFlow/PyTorch (shared/CONVENTIONS.md), identically in the
NumPy oracle, the cpu kernels and the cuda kernels (run here on the emulation,
tests/cuda_emulation.py).

Each kernel family gets inputs holding NaN, +inf and -inf at random positions (fixed seeds), and
its outputs are compared with the float64 oracle position by position: the NaN, +inf and -inf
masks must be equal, the finite values close. Where the semantics can be stated without the
oracle (a conv output is NaN exactly when its receptive field holds a NaN; a max-pool window
holding a NaN pools to NaN and routes its gradient there), that is checked directly as well.
"""
import warnings

import numpy as np
import pytest

import fastconv
from fastconv import cuda as fcuda
from fastconv import layers, losses, models, optimizers
from fastconv import reference as R

import cuda_emulation

# NumPy (the oracle, the fake CuPy) warns on every NaN it makes; making NaN is the point here.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

BACKENDS = ["numpy", "cpu", "cuda"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """The backend's name; "cuda" runs the .cu kernels on the emulation."""
    if request.param == "cuda":
        cuda_emulation.install(monkeypatch)
    with fastconv.backend(request.param):
        yield request.param


def _module(name):
    return {"numpy": R, "cpu": fastconv._C, "cuda": fcuda}[name]


def _to(name, a):
    if isinstance(a, np.ndarray) and name == "cuda":
        return fcuda.to_device(a)
    return a


def _back(a):
    if isinstance(a, (tuple, list)):
        return type(a)(_back(v) for v in a)
    return None if a is None else fcuda.to_host(a)


def call(name, fn, *args, **kw):
    """Kernel `fn` of backend `name` on host arrays (float arrays as float32), host results."""
    args = [np.ascontiguousarray(a, np.float32) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
            else a for a in args]
    return _back(getattr(_module(name), fn)(*[_to(name, a) for a in args], **kw))


def oracle(fn, *args, **kw):
    """The float64 oracle on the same (float32-rounded) inputs."""
    args = [a.astype(np.float32).astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
            else a for a in args]
    return getattr(R, fn)(*args, **kw)


def same(got, want, rtol=1e-4, what=""):
    """NaN, +inf and -inf exactly where `want` has them; the finite values close."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    for mask in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(mask(got), mask(want), err_msg=f"{what}: {mask.__name__}")
    fin = np.isfinite(want)
    scale = max(float(np.abs(want[fin]).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=rtol * scale, err_msg=what)


def poke(shape, seed, nan=3, pinf=2, ninf=2, base=None):
    """Standard normal values of `shape` with NaN, +inf and -inf at distinct random positions."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(np.float32) if base is None else base.copy()
    flat = a.reshape(-1)
    pos = rng.choice(flat.size, nan + pinf + ninf, replace=False)
    flat[pos[:nan]] = np.nan
    flat[pos[nan:nan + pinf]] = np.inf
    flat[pos[nan + pinf:]] = -np.inf
    return a


def normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Activations (also the conv/dense epilogues' element math)

ACTS = ["linear", "relu", "sigmoid", "tanh"]


def test_relu_keeps_nan_and_maps_infinities():
    x = np.array([[np.nan, np.inf, -np.inf, -1.0, 2.0]], np.float32)
    for name in ("numpy", "cpu"):
        y = call(name, "bias_act_forward", x, None, "relu")
        np.testing.assert_array_equal(y, [[np.nan, np.inf, 0.0, 0.0, 2.0]], err_msg=name)


@pytest.mark.parametrize("act", ACTS)
def test_bias_activation_forward_and_backward(backend, act):
    x = poke((37, 21), 1)  # 21 channels: vector lanes and a scalar tail
    b = normal(21, 2)
    b[5] = np.nan
    same(call(backend, "bias_act_forward", x, b, act), oracle("bias_act_forward", x, b, act), what="fwd")
    same(call(backend, "bias_act_forward", x, None, act), oracle("bias_act_forward", x, None, act),
         what="fwd, no bias")
    y = oracle("bias_act_forward", x, None, act).astype(np.float32)
    dy = poke((37, 21), 3)
    dz, db = call(backend, "bias_act_backward", dy, y, act, True)
    want_dz, want_db = oracle("bias_act_backward", dy, y, act, True)
    same(dz, want_dz, what="dz")
    same(db, want_db, what="db")


@pytest.mark.parametrize("act", ["relu", "linear"])
def test_add_activation(backend, act):
    a, b = poke((5, 7, 33), 4), poke((5, 7, 33), 5)
    same(call(backend, "add_act_forward", a, b, act), oracle("add_act_forward", a, b, act))


# ---------------------------------------------------------------------------------------------
# Convolution: every algorithm of the cpu backend, and the fused epilogue

# (x_shape, w_shape, strides, pads, dilation, groups, cpu algorithm)
CONVS = [
    ((2, 12, 11, 8), (3, 3, 8, 9), (1, 1), (1, 1, 1, 1), (1, 1), 1, "winograd"),
    ((2, 12, 11, 8), (3, 3, 8, 9), (1, 1), (0, 2, 2, 0), (1, 1), 1, "im2col"),
    ((2, 13, 12, 3), (5, 5, 3, 8), (1, 1), (2, 2, 2, 2), (1, 1), 1, "direct"),
    ((2, 11, 10, 6), (3, 3, 1, 12), (2, 1), (1, 1, 1, 1), (1, 2), 6, "auto"),   # depthwise, M = 2
    ((2, 9, 9, 16), (1, 1, 16, 8), (1, 1), (0, 0, 0, 0), (1, 1), 1, "auto"),    # pointwise
    ((2, 10, 9, 6), (3, 3, 2, 9), (2, 2), (1, 0, 1, 0), (1, 1), 3, "auto"),     # grouped
]


@pytest.fixture
def algorithm():
    before = fastconv.get_conv_algorithm()
    yield fastconv.set_conv_algorithm
    fastconv.set_conv_algorithm(before)


def _receptive_hits(bad, w_shape, strides, pads, dilation, groups):
    """Which conv outputs read a cell where `bad` is True (any weight: NaN * w is NaN)."""
    ones = np.ones(w_shape[:3] + (w_shape[3],), np.float64)
    return R.conv2d_forward(bad.astype(np.float64), ones, None, strides, pads, dilation, groups) > 0


@pytest.mark.parametrize("xs,ws,strides,pads,dil,groups,algo", CONVS)
def test_conv_forward_nan_exactly_where_the_receptive_field_holds_one(backend, algorithm, xs, ws,
                                                                      strides, pads, dil, groups, algo):
    algorithm(algo)
    x = poke(xs, 10, nan=4, pinf=0, ninf=0)
    w, b = normal(ws, 11), normal(ws[3], 12)
    for act in ("linear", "relu"):
        y = call(backend, "conv2d_forward", x, w, b, strides, pads, dil, groups, act)
        hits = _receptive_hits(np.isnan(x), ws, strides, pads, dil, groups)
        np.testing.assert_array_equal(np.isnan(y), hits, err_msg=act)
        same(y, oracle("conv2d_forward", x, w, b, strides, pads, dil, groups, act), what=act)


@pytest.mark.parametrize("xs,ws,strides,pads,dil,groups,algo", CONVS)
@pytest.mark.parametrize("act", ACTS)
def test_conv_forward_with_infinities(backend, algorithm, xs, ws, strides, pads, dil, groups, algo, act):
    algorithm(algo)
    x = poke(xs, 13)
    w, b = normal(ws, 14), normal(ws[3], 15)
    same(call(backend, "conv2d_forward", x, w, b, strides, pads, dil, groups, act),
         oracle("conv2d_forward", x, w, b, strides, pads, dil, groups, act))


@pytest.mark.parametrize("xs,ws,strides,pads,dil,groups,algo", CONVS)
def test_conv_backward_passes(backend, algorithm, xs, ws, strides, pads, dil, groups, algo):
    algorithm(algo)
    w = normal(ws, 16)
    ys = oracle("conv2d_forward", normal(xs, 0), w, None, strides, pads, dil, groups).shape
    dy = poke(ys, 17)
    got = call(backend, "conv2d_backward_data", dy, w, xs, strides, pads, dil, groups)
    hits = _backward_data_hits(np.isnan(dy), xs, ws, strides, pads, dil, groups)
    assert np.isnan(got[hits]).all()
    same(got, oracle("conv2d_backward_data", dy, w, xs, strides, pads, dil, groups), what="dx")
    # Weights: non-finite x with finite dy, then the other way round.
    for x, d in ((poke(xs, 18), normal(ys, 19)), (normal(xs, 20), dy)):
        dw, db = call(backend, "conv2d_backward_weights", d, x, ws, strides, pads, dil, groups, True)
        want_dw, want_db = oracle("conv2d_backward_weights", d, x, ws, strides, pads, dil, groups, True)
        same(dw, want_dw, what="dw")
        same(db, want_db, what="db")


def _backward_data_hits(bad_dy, xs, ws, strides, pads, dil, groups):
    """dx cells that some NaN dy reaches through any weight."""
    ones = np.ones(ws, np.float64)
    return R.conv2d_backward_data(bad_dy.astype(np.float64), ones, xs, strides, pads, dil, groups) > 0


def test_dense(backend):
    x, w, b = poke((9, 20), 21), normal((20, 7), 22), normal(7, 23)
    y = call(backend, "dense_forward", x, w, b)
    same(y, oracle("dense_forward", x, w, b))
    assert np.isnan(y[np.isnan(x).any(axis=1)]).all()
    dy = poke((9, 7), 24)
    for got, want in zip(call(backend, "dense_backward", dy, x, w), oracle("dense_backward", dy, x, w)):
        same(got, want)


# ---------------------------------------------------------------------------------------------
# Pooling

POOLS = [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 2), (1, 1, 1, 1)), ((3, 2), (1, 2), (0, 1, 1, 0))]


def test_max_pool_of_a_window_holding_nan_is_nan():
    x = np.array([[1, np.nan], [3, 2]], np.float32).reshape(1, 2, 2, 1)
    for name in ("numpy", "cpu"):
        y = call(name, "max_pool2d_forward", x, (2, 2), (2, 2), (0, 0, 0, 0))
        assert np.isnan(y).all(), name
        dx = call(name, "max_pool2d_backward", np.ones((1, 1, 1, 1), np.float32), x, (2, 2), (2, 2),
                  (0, 0, 0, 0))
        np.testing.assert_array_equal(dx.reshape(2, 2), [[0, 1], [0, 0]], err_msg=name)
    # Two NaNs: the last in row-major order is the argmax (PyTorch's `val > max || isnan(val)`).
    x = np.array([[np.nan, 5], [np.nan, 2]], np.float32).reshape(1, 2, 2, 1)
    for name in ("numpy", "cpu"):
        y, arg = call(name, "max_pool2d_forward_with_argmax", x, (2, 2), (2, 2), (0, 0, 0, 0))
        assert np.isnan(y).all() and arg.item() == 2, name


def _window_hits(bad, pool, strides, pads):
    """Which max-pool outputs have a window holding a cell where `bad` is True."""
    return R.max_pool2d_forward(np.where(bad, 1.0, 0.0), pool, strides, pads) > 0


@pytest.mark.parametrize("pool,strides,pads", POOLS)
@pytest.mark.parametrize("c", [3, 16, 70])  # scalar tail, one vector, 4-vector blocks + tail
def test_max_pool(backend, pool, strides, pads, c):
    x = poke((2, 9, 8, c), 30, nan=6, pinf=4, ninf=4)
    y = call(backend, "max_pool2d_forward", x, pool, strides, pads)
    np.testing.assert_array_equal(np.isnan(y), _window_hits(np.isnan(x), pool, strides, pads))
    same(y, oracle("max_pool2d_forward", x, pool, strides, pads), what="y")
    dy = normal(y.shape, 31)
    dx = call(backend, "max_pool2d_backward", dy, x, pool, strides, pads)
    same(dx, oracle("max_pool2d_backward", dy, x, pool, strides, pads), what="dx")
    # Every window holding NaN sends its gradient to a NaN cell.
    routed = call(backend, "max_pool2d_backward", np.ones_like(y), x, pool, strides, pads)
    hit = _window_hits(np.isnan(x), pool, strides, pads)
    assert routed[np.isnan(x)].sum() == pytest.approx(hit.sum())
    if backend != "cuda":  # the cuda backend has no argmax kernels
        y2, arg = call(backend, "max_pool2d_forward_with_argmax", x, pool, strides, pads)
        same(y2, y, what="y with argmax")
        want_arg = oracle("max_pool2d_forward_with_argmax", x, pool, strides, pads)[1]
        np.testing.assert_array_equal(arg, want_arg)
        same(call(backend, "max_pool2d_backward_argmax", dy, arg, x.shape, pool, strides, pads), dx,
             what="dx from argmax")


def test_global_max_pool(backend):
    from fastconv import functional as F
    x = poke((3, 5, 4, 18), 32)
    y = _back(F.global_max_pool2d(_to(backend, x)))
    want = oracle("max_pool2d_forward", x, (5, 4), (5, 4), (0, 0, 0, 0)).reshape(3, 18)
    same(y, want)
    assert np.isnan(y[np.isnan(x).any(axis=(1, 2))]).all()


@pytest.mark.parametrize("pool,strides,pads", POOLS)
def test_avg_pool(backend, pool, strides, pads):
    x = poke((2, 9, 8, 19), 33)
    y = call(backend, "avg_pool2d_forward", x, pool, strides, pads)
    same(y, oracle("avg_pool2d_forward", x, pool, strides, pads))
    dy = poke(y.shape, 34)
    same(call(backend, "avg_pool2d_backward", dy, x.shape, pool, strides, pads),
         oracle("avg_pool2d_backward", dy, x.shape, pool, strides, pads))


def test_global_avg_pool(backend):
    x = poke((3, 6, 5, 20), 35)
    same(call(backend, "global_avg_pool2d_forward", x), oracle("global_avg_pool2d_forward", x))
    dy = poke((3, 20), 36)
    same(call(backend, "global_avg_pool2d_backward", dy, x.shape), oracle("global_avg_pool2d_backward", dy, x.shape))


# ---------------------------------------------------------------------------------------------
# Batch norm, softmax, concat

@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm(backend, relu):
    c = 20
    x = normal((4, 5, 3, c), 40)
    x[1, 2, 1, 3] = np.nan  # channel 3: NaN statistics, all NaN
    x[0, 0, 0, 7] = np.inf  # channel 7: inf - inf: NaN as well
    gamma, beta = normal(c, 41), normal(c, 42)
    got = call(backend, "batch_norm_forward_train", x, gamma, beta, 1e-3, relu)
    want = oracle("batch_norm_forward_train", x, gamma, beta, 1e-3, relu)
    for g, w_, what in zip(got, want, ("y", "mean", "var", "inv_std")):
        same(g, w_, rtol=1e-3, what=what)
    assert np.isnan(got[0][..., 3]).all() and np.isnan(got[0][..., 7]).all()
    mean, var = normal(c, 43), np.abs(normal(c, 44))
    xi = poke(x.shape, 45)
    same(call(backend, "batch_norm_forward_inference", xi, gamma, beta, mean, var, 1e-3, relu),
         oracle("batch_norm_forward_inference", xi, gamma, beta, mean, var, 1e-3, relu), what="inference")
    # Backward with finite statistics and NaN/inf in dy.
    xf = normal(x.shape, 46)
    _, mu, _, inv = oracle("batch_norm_forward_train", xf, gamma, beta, 1e-3)
    dy = poke(x.shape, 47)
    rb = beta if relu else None
    got = call(backend, "batch_norm_backward", dy, xf, gamma, mu, inv, rb)
    want = oracle("batch_norm_backward", dy, xf, gamma, mu, inv, rb)
    for g, w_, what in zip(got, want, ("dx", "dgamma", "dbeta")):
        same(g, w_, rtol=1e-3, what=what)


def test_softmax(backend):
    x = normal((6, 37), 50)
    x[1, 4] = np.nan
    x[2, 0] = np.nan   # the first column: the max search starts there
    x[3, 36] = np.nan  # the last: the scalar tail of the vector loops
    x[4, 9] = np.inf
    x[5, :] = -np.inf
    y = call(backend, "softmax_forward", x)
    same(y, oracle("softmax_forward", x))
    assert np.isnan(y[1:]).all() and np.isfinite(y[0]).all()
    dy = poke(x.shape, 51)
    yf = oracle("softmax_forward", normal(x.shape, 52)).astype(np.float32)
    same(call(backend, "softmax_backward", dy, yf), oracle("softmax_backward", dy, yf))


def test_softmax_cross_entropy_of_nan_logits_is_nan(backend):
    logits = normal((7, 10), 53)
    labels = np.array([0, 1, 2, 3, 4, 5, 9], np.int64)
    logits[1, 7] = np.nan   # not the label's logit
    logits[2, 2] = np.nan   # the label's
    logits[3, 0] = np.nan   # the first
    logits[4, 5] = np.inf
    logits[5, 5] = -np.inf  # the label's logit is -inf: loss +inf
    logits[6, :] = -np.inf
    loss, probs = call(backend, "softmax_cross_entropy_forward", logits, labels)
    want_loss, want_probs = oracle("softmax_cross_entropy_forward", logits, labels)
    same(loss, want_loss)
    same(probs, want_probs)
    assert np.isfinite(loss[0]) and np.isnan(loss[1:5]).all() and loss[5] == np.inf
    probs = poke((7, 10), 54)
    dloss = poke((7,), 55, nan=1, pinf=1, ninf=0)
    same(call(backend, "softmax_cross_entropy_backward", probs, labels, dloss),
         oracle("softmax_cross_entropy_backward", probs, labels, dloss))


def test_concat(backend):
    a, b = poke((4, 3, 5), 60), poke((4, 3, 17), 61)
    same(call(backend, "concat_last", [_to(backend, a), _to(backend, b)]), np.concatenate([a, b], -1))


# ---------------------------------------------------------------------------------------------
# Optimizers: a NaN gradient makes a NaN weight, whatever the clipping

@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(0.1),
    lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    lambda: optimizers.Adam(0.01),
    lambda: optimizers.Adam(0.01, amsgrad=True),
    lambda: optimizers.AdamW(0.01, clipnorm=1.0),
    lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    lambda: optimizers.Adagrad(0.1, clipvalue=0.5),  # clips inf to 0.5: finite
    lambda: optimizers.SGD(0.1, global_clipnorm=1.0),
], ids=["sgd", "nesterov", "adam", "amsgrad", "adamw-clipnorm", "rmsprop", "adagrad-clipvalue",
        "sgd-global-clipnorm"])
def test_a_nan_gradient_gives_a_nan_weight(backend, make):
    w0 = normal((4, 8), 70)
    g = normal((4, 8), 71)
    g[1, 2] = np.nan
    g[3, 5] = np.inf
    var = fastconv.autograd.Variable(_to(backend, w0.copy()))
    opt = make()
    opt.apply_gradients([(_to(backend, g), var)])
    w = _back(var.data)
    clipped_globally = opt.clipnorm is not None or opt.global_clipnorm is not None
    if clipped_globally:  # the norm is NaN: every weight
        assert np.isnan(w).all()
    else:  # clipvalue clips inf to a finite gradient (as Keras does), never NaN
        assert np.isnan(w[1, 2]) and (opt.clipvalue is not None or not np.isfinite(w[3, 5]))
    # Every slot the NaN went through holds NaN there (amsgrad's running max too: fmaxf
    # dropped it), and a second, finite step does not wash it out.
    for name, slot in opt.get_state(var).items():
        assert np.isnan(_back(slot)[1, 2]), name
    opt.apply_gradients([(_to(backend, normal((4, 8), 72)), var)])
    assert np.isnan(_back(var.data)[1, 2])


# ---------------------------------------------------------------------------------------------
# fit on one NaN pixel

def _model():
    fastconv.set_seed(7)
    return models.Sequential([
        layers.Input((8, 8, 2)),
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.BatchNormalization(),
        layers.Conv2D(6, 3, padding="same"),
        layers.ReLU(),
        layers.GlobalAveragePooling2D(),
        layers.Dense(3),
    ])


def test_fit_stops_on_one_nan_pixel_and_predict_gives_nan(backend):
    rng = np.random.default_rng(80)
    x = rng.standard_normal((16, 8, 8, 2)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    x[5, 3, 4, 1] = np.nan  # one pixel of one image
    model = _model()
    model.compile(optimizers.Adam(1e-2), losses.SparseCategoricalCrossentropy(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any("the loss became nan" in m and "training stopped" in m for m in messages), messages
    assert model.stop_training and len(history.history.get("loss", [])) <= 1
    pred = model.predict(x[5:6], verbose=0)
    assert np.isnan(pred).all(), pred


# ---------------------------------------------------------------------------------------------
# The poison switch (tests/conftest.py turns it on for the session)

def test_poisoned_outputs_start_as_nan(monkeypatch):
    from fastconv_subprocess import run_python
    assert fastconv._C._get_poison_outputs() and fcuda._get_poison_outputs()
    cuda_emulation.install(monkeypatch)
    assert np.isnan(fcuda.to_host(fcuda._empty((3, 4)))).all()
    code = "import fastconv._C as C, fastconv.cuda as K; print(C._get_poison_outputs(), K._get_poison_outputs())"
    for env, want in (("1", "True True"), ("0", "False False")):
        out = run_python(["-c", code], env={"FASTCONV_POISON_OUTPUTS": env}, capture_output=True,
                         text=True, check=True)
        assert out.stdout.split() == want.split()


def test_an_empty_batch_still_writes_every_output():
    # With poisoning on, outputs the kernels must fill even when there is nothing to sum.
    x = np.zeros((0, 5, 5, 2), np.float32)
    dy = np.zeros((0, 3, 3, 4), np.float32)
    dw, db = fastconv._C.conv2d_backward_weights(dy, x, (3, 3, 2, 4), (1, 1), (0, 0, 0, 0), (1, 1), 1, True)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)
    dz, db = fastconv._C.bias_act_backward(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), "relu", True)
    np.testing.assert_array_equal(db, 0)
