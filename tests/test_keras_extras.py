"""Everyday Keras names of issue 16's follow-up: models.clone_model, losses.Huber/huber,
metrics.Precision/Recall/AUC, layers.Permute/RepeatVector/Identity.

Layers: values against NumPy, float64 central-difference gradients, numpy/cpu/(emulated) cuda
agreement, NaN propagation, clear argument errors. Huber: values against the NumPy formula and
its float64 gradient by finite differences. Metrics: NumPy references written here (loops over
the thresholds, independent of the vectorised code), Keras's values stored in
tests/golden/keras_extras_metrics.json (recomputed live where a Keras peer is installed).
clone_model: architecture and names kept, weights new, shared layers stay shared."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastconv as keras
from fastconv import layers, losses, metrics, models
from fastconv.autograd import Tensor
from fastconv.reference.gradcheck import check_grad

import cuda_emulation

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "keras_extras_metrics.json")

# -- layers -----------------------------------------------------------------------------------
LAYER_CASES = [
    # id, factory, input shape, NumPy formula
    ("permute_image", lambda: layers.Permute((3, 1, 2)), (2, 3, 4, 5), lambda x: x.transpose(0, 3, 1, 2)),
    ("permute_swap", lambda: layers.Permute((2, 1)), (3, 4, 2), lambda x: x.transpose(0, 2, 1)),
    ("repeat_vector", lambda: layers.RepeatVector(3), (2, 5), lambda x: np.repeat(x[:, None, :], 3, axis=1)),
    ("repeat_vector_once", lambda: layers.RepeatVector(1), (2, 4), lambda x: x[:, None, :]),
    ("identity", lambda: layers.Identity(), (2, 3, 3, 2), lambda x: x),
]
IDS = [c[0] for c in LAYER_CASES]


def _x(shape, dtype):
    return np.random.default_rng(7).standard_normal(shape).astype(dtype)


def _forward_backward(make, x, to_device=lambda a: a, to_host=lambda a: a):
    xt = Tensor(to_device(x), requires_grad=True)
    y = make()(xt)
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(x.dtype)
    (y * Tensor(to_device(dy))).sum().backward()
    return to_host(y.data), to_host(xt.grad), dy


@pytest.mark.parametrize("name, make, shape, formula", LAYER_CASES, ids=IDS)
def test_layer_values_and_float64_gradients(name, make, shape, formula, numpy_backend):
    x = _x(shape, np.float64)
    y, dx, dy = _forward_backward(make, x)
    np.testing.assert_array_equal(y, formula(x))
    layer = make()
    check_grad(lambda v: float(np.sum(layer(Tensor(v)).numpy() * dy)), x, dx, rtol=1e-6, atol=1e-8, name=name)
    assert tuple(layer.compute_output_shape((None,) + shape[1:])) == (None,) + y.shape[1:]


@pytest.mark.parametrize("name, make, shape, formula", LAYER_CASES, ids=IDS)
def test_layer_backends_agree(name, make, shape, formula, monkeypatch):
    x = _x(shape, np.float32)
    with keras.backend("numpy"):
        ref = _forward_backward(make, x)
    with keras.backend("cpu"):
        cpu = _forward_backward(make, x)
    cuda_emulation.install(monkeypatch)
    from fastconv import cuda as fcuda
    with keras.backend("cuda"):
        gpu = _forward_backward(make, x, fcuda.to_device, cuda_emulation.host)
    for other in (cpu, gpu):
        np.testing.assert_allclose(other[0], ref[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(other[1], ref[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name, make, shape, formula", LAYER_CASES, ids=IDS)
def test_layer_nan_propagates(name, make, shape, formula, numpy_backend):
    x = _x(shape, np.float32)
    x[(0,) * len(shape)] = np.nan
    y = make()(x).numpy()
    assert np.isnan(y[0]).sum() == (3 if name == "repeat_vector" else 1)
    assert not np.isnan(y[1:]).any()


def test_layer_argument_and_shape_errors(numpy_backend):
    with pytest.raises(ValueError, match="dims must be a permutation of 1..2"):
        layers.Permute((0, 1))
    with pytest.raises(ValueError, match="dims must be a tuple of ints"):
        layers.Permute("ab")
    with pytest.raises(ValueError, match=r"permute 2 axes .* has 3 besides the batch"):
        layers.Permute((2, 1))(np.zeros((1, 2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        layers.RepeatVector(0)
    with pytest.raises(ValueError, match=r"2-D input \(batch, features\)"):
        layers.RepeatVector(2)(np.zeros((1, 2, 3), np.float32))


def test_layers_in_a_trained_functional_model(numpy_backend, rng):
    inputs = layers.Input((4, 6))
    x = layers.Permute((2, 1))(inputs)                      # (6, 4)
    x = layers.Identity()(layers.Flatten()(x))              # 24
    x = layers.RepeatVector(2)(layers.Dense(3)(x))          # (2, 3)
    model = models.Model(inputs, layers.Dense(1)(layers.Flatten()(x)))
    assert model.output_shape == (None, 1) and model.count_params() == 24 * 3 + 3 + 6 + 1
    model.compile(optimizer="sgd", loss="mse")
    x, y = rng.standard_normal((8, 4, 6)).astype(np.float32), rng.standard_normal((8, 1)).astype(np.float32)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before


# -- Huber ------------------------------------------------------------------------------------
def _huber_numpy(y_true, y_pred, delta):
    e = y_pred - y_true
    per = np.where(np.abs(e) <= delta, 0.5 * e ** 2, delta * np.abs(e) - 0.5 * delta ** 2)
    return per.mean(axis=-1)


@pytest.mark.parametrize("delta", [1.0, 0.3, 2.5])
def test_huber_values_and_float64_gradient(delta, numpy_backend, rng):
    y_true = rng.standard_normal((5, 4)) * 2
    y_pred = y_true + rng.standard_normal((5, 4)) * 2  # errors on both sides of delta
    w = rng.uniform(0.1, 2.0, 5)
    loss = losses.Huber(delta=delta)
    assert float(loss(y_true, y_pred)) == pytest.approx(_huber_numpy(y_true, y_pred, delta).mean(), rel=1e-12)
    want = (_huber_numpy(y_true, y_pred, delta) * w).sum() / 5  # Keras's sum over batch size
    assert float(loss(y_true, y_pred, sample_weight=w)) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(losses.huber(y_true, y_pred, delta=delta).numpy(),
                               _huber_numpy(y_true, y_pred, delta), rtol=1e-12)
    yp = Tensor(y_pred, requires_grad=True)
    loss(y_true, yp, sample_weight=w).backward()
    check_grad(lambda v: float(loss(y_true, Tensor(v), sample_weight=w)), y_pred, yp.grad,
               rtol=1e-6, atol=1e-9, skip_kinks=True, name=f"huber delta={delta}")


def test_huber_names_nan_and_errors(numpy_backend):
    assert isinstance(losses.get("huber"), losses.Huber) and isinstance(losses.get("Huber"), losses.Huber)
    assert isinstance(losses.get(losses.huber), losses.Huber)  # the function compiles as the class
    assert losses.Huber().name == "huber_loss"
    assert np.isnan(float(losses.Huber()(np.zeros((2, 2)), np.array([[np.nan, 0.0], [0.0, 0.0]]))))
    with pytest.raises(ValueError, match="delta must be a float >= 0"):
        losses.Huber(delta=-1.0)


# -- Precision / Recall -----------------------------------------------------------------------
def _counts_numpy(y_true, y_pred, w, t):
    """(tp, fp, fn) at threshold t, by explicit loops."""
    tp = fp = fn = 0.0
    for yt, yp, wi in zip(y_true.ravel(), y_pred.ravel(), w.ravel()):
        if yp > t and yt:
            tp += wi
        elif yp > t:
            fp += wi
        elif yt:
            fn += wi
    return tp, fp, fn


def _binary_data(rng, n=60):
    y_true = (rng.uniform(size=(n, 1)) < 0.4).astype(np.float32)
    y_pred = np.clip(0.5 * y_true + rng.uniform(size=(n, 1)) * 0.7, 0, 1).astype(np.float32)
    return y_true, y_pred


def test_precision_and_recall_against_numpy(rng):
    y_true, y_pred = _binary_data(rng)
    w = rng.uniform(0.0, 2.0, (60,))
    p, r = metrics.Precision(), metrics.Recall(thresholds=[0.2, 0.5, 0.8])
    for start in (0, 25):  # two batches accumulate
        sl = slice(start, start + 25 if start == 0 else None)
        p.update_state(y_true[sl], y_pred[sl], sample_weight=w[sl])
        r.update_state(y_true[sl], y_pred[sl], sample_weight=w[sl])
    tp, fp, _ = _counts_numpy(y_true, y_pred, w[:, None], 0.5)
    assert float(p.result()) == pytest.approx(tp / (tp + fp), rel=1e-9)
    assert p.result().numpy().dtype == np.float32  # Keras's result().numpy()
    want = []
    for t in (0.2, 0.5, 0.8):
        tp, _, fn = _counts_numpy(y_true, y_pred, w[:, None], t)
        want.append(tp / (tp + fn))
    np.testing.assert_allclose(r.result(), want, rtol=1e-6)
    p.reset_state()
    assert float(p.result()) == 0.0  # nothing predicted positive: 0, not NaN


def test_precision_recall_top_k_and_class_id(rng):
    y_true = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 30)]
    y_pred = rng.uniform(size=(30, 4)).astype(np.float32)
    top2 = np.argsort(-y_pred, axis=1)[:, :2]
    kept = np.zeros_like(y_pred, bool)
    np.put_along_axis(kept, top2, True, axis=1)
    tp = (kept & (y_true > 0)).sum()
    p = metrics.Precision(top_k=2)
    p.update_state(y_true, y_pred)
    assert float(p.result()) == pytest.approx(tp / kept.sum())
    r = metrics.Recall(top_k=2, class_id=1)
    r.update_state(y_true, y_pred)
    assert float(r.result()) == pytest.approx((kept[:, 1] & (y_true[:, 1] > 0)).sum() / y_true[:, 1].sum())
    with pytest.raises(ValueError, match="class_id 9 is out of range"):
        metrics.Precision(class_id=9).update_state(y_true, y_pred)
    with pytest.raises(ValueError, match=r"thresholds must be floats in \[0, 1\]"):
        metrics.Recall(thresholds=1.5)
    with pytest.raises(ValueError, match="does not match y_pred"):
        metrics.Precision().update_state(np.zeros(3), np.zeros(4))


# -- AUC --------------------------------------------------------------------------------------
def _auc_numpy(y_true, y_pred, num_thresholds, curve, method):
    """Keras's Riemann sum, written from its documented rule with loops."""
    ts = [-1e-7] + [i / (num_thresholds - 1) for i in range(1, num_thresholds - 1)] + [1 + 1e-7]
    w = np.ones_like(y_pred, np.float64)
    rows = []
    for t in ts:
        tp, fp, fn = _counts_numpy(y_true, y_pred, w, t)
        tn = y_true.size - tp - fp - fn
        rows.append((tp, fp, tn, fn))
    def ratio(a, b):
        return a / b if b else 0.0
    total = 0.0
    for (tp0, fp0, tn0, fn0), (tp1, fp1, tn1, fn1) in zip(rows[:-1], rows[1:]):
        if curve == "PR" and method == "interpolation":
            # Davis & Goadrich: precision along the straight line between the two points.
            dtp, p0, p1 = tp0 - tp1, tp0 + fp0, tp1 + fp1
            slope = ratio(dtp, max(p0 - p1, 0))
            intercept = tp1 - slope * p1
            log_ratio = np.log(p0 / p1) if p0 > 0 and p1 > 0 else 0.0
            total += ratio(slope * (dtp + intercept * log_ratio), tp1 + fn1)
            continue
        if curve == "ROC":
            x0, x1, y0, y1 = ratio(fp0, fp0 + tn0), ratio(fp1, fp1 + tn1), ratio(tp0, tp0 + fn0), ratio(tp1, tp1 + fn1)
        else:
            x0, x1 = ratio(tp0, tp0 + fn0), ratio(tp1, tp1 + fn1)
            y0, y1 = ratio(tp0, tp0 + fp0), ratio(tp1, tp1 + fp1)
        h = {"interpolation": (y0 + y1) / 2, "minoring": min(y0, y1), "majoring": max(y0, y1)}[method]
        total += (x0 - x1) * h
    return total


@pytest.mark.parametrize("curve, method", [("ROC", "interpolation"), ("ROC", "minoring"), ("PR", "interpolation"),
                                           ("PR", "majoring")])
def test_auc_against_numpy(curve, method, rng):
    y_true, y_pred = _binary_data(rng, 80)
    m = metrics.AUC(num_thresholds=37, curve=curve, summation_method=method)
    m.update_state(y_true[:50], y_pred[:50])
    m.update_state(y_true[50:], y_pred[50:])
    assert float(m.result()) == pytest.approx(_auc_numpy(y_true, y_pred, 37, curve, method), rel=1e-9, abs=1e-12)


def test_auc_approaches_the_rank_statistic(rng):
    y_true, y_pred = _binary_data(rng, 200)
    pos, neg = y_pred[y_true > 0], y_pred[y_true == 0]
    exact = ((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    m = metrics.AUC(num_thresholds=2000)
    m.update_state(y_true, y_pred)
    assert float(m.result()) == pytest.approx(exact, abs=2e-3)
    logits = metrics.AUC(num_thresholds=2000, from_logits=True)
    logits.update_state(y_true, np.log(y_pred + 1e-3) - np.log(1 - y_pred + 1e-3))
    assert float(logits.result()) == pytest.approx(exact, abs=2e-3)
    with pytest.raises(ValueError, match="curve must be 'ROC' or 'PR'"):
        metrics.AUC(curve="XY")
    with pytest.raises(ValueError, match="label_weights must be >= 0"):
        metrics.AUC(label_weights=[1.0, -1.0])


@pytest.mark.parametrize("curve", ["ROC", "PR"])
def test_auc_multi_label_is_the_labels_mean(curve, rng):
    y_true = (rng.uniform(size=(50, 3)) < 0.4).astype(np.float32)
    y_pred = rng.uniform(size=(50, 3)).astype(np.float32)
    per_label = [_auc_numpy(y_true[:, j], y_pred[:, j], 30, curve, "interpolation") for j in range(3)]
    m = metrics.AUC(num_thresholds=30, curve=curve, multi_label=True)
    assert float(m.result()) == 0.0  # nothing seen yet
    m.update_state(y_true, y_pred)
    assert float(m.result()) == pytest.approx(np.mean(per_label), rel=1e-9)
    weighted = metrics.AUC(num_thresholds=30, curve=curve, multi_label=True, num_labels=3, label_weights=[1, 0, 3])
    weighted.update_state(y_true, y_pred)
    assert float(weighted.result()) == pytest.approx((per_label[0] + 3 * per_label[2]) / 4, rel=1e-9)
    with pytest.raises(ValueError, match="expected predictions with 3 labels"):
        weighted.update_state(y_true[:, :2], y_pred[:, :2])


def test_metrics_in_compile_by_object_and_keras_name(numpy_backend, rng):
    x = rng.standard_normal((32, 3)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = keras.Sequential([layers.Input((3,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy",
                  metrics=[keras.metrics.Precision(), "recall", "AUC", keras.metrics.AUC(curve="PR", name="pr")])
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert {"precision", "recall", "AUC", "pr"} <= set(history.history)
    scores = model.predict(x, verbose=0)
    want = metrics.AUC()
    want.update_state(y, scores)
    got = model.evaluate(x, y, verbose=0, return_dict=True)
    assert got["AUC"] == pytest.approx(float(want.result()), abs=1e-6)


# -- against Keras: stored values, and recomputed live where a peer is installed -------------
def _peer_data():
    rng = np.random.default_rng(2026)
    y_true = (rng.uniform(size=(64, 3)) < 0.4).astype(np.float32)
    y_pred = np.clip(0.4 * y_true + rng.uniform(size=(64, 3)) * 0.75, 0, 1).astype(np.float32)
    w = rng.uniform(0.0, 2.0, 64).astype(np.float32)
    return y_true, y_pred, w


# name -> (class name, constructor arguments), the same in fastconv.metrics and keras.metrics;
# every one is updated with the sample weights w.
PEER_METRICS = {
    "precision": ("Precision", {}),
    "recall_thresholds": ("Recall", {"thresholds": [0.3, 0.6]}),
    "precision_top_k": ("Precision", {"top_k": 1}),
    "recall_class_id": ("Recall", {"class_id": 2}),
    "auc_roc": ("AUC", {}),
    "auc_pr": ("AUC", {"curve": "PR"}),
    "auc_multi_label": ("AUC", {"multi_label": True}),
    "auc_pr_label_weights": ("AUC", {"curve": "PR", "label_weights": [0.5, 1.0, 2.0]}),
    "auc_multi_label_weights": ("AUC", {"multi_label": True, "label_weights": [0.5, 1.0, 2.0]}),
    "auc_roc_minoring": ("AUC", {"num_thresholds": 20, "summation_method": "minoring"}),
}


def _fastconv_values():
    y_true, y_pred, w = _peer_data()
    out = {}
    for name, (cls, kwargs) in PEER_METRICS.items():
        m = getattr(metrics, cls)(**kwargs)
        m.update_state(y_true, y_pred, sample_weight=w)
        out[name] = np.atleast_1d(np.asarray(m.result(), np.float64)).tolist()
    out["huber"] = [float(losses.Huber(delta=0.3)(y_true, y_pred, sample_weight=w))]
    return out


def _compare(got, want):
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_values_match_stored_keras_values():
    with open(GOLDEN) as f:
        _compare(_fastconv_values(), json.load(f))


PEER_SCRIPT = """
import json, os, sys
os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
import numpy as np, keras
d = np.load(sys.argv[1])
y_true, y_pred, w = d['y_true'], d['y_pred'], d['w']
out = {}
for name, (cls, kwargs) in json.loads(sys.argv[2]).items():
    m = getattr(keras.metrics, cls)(**kwargs)
    m.update_state(y_true, y_pred, sample_weight=w)
    out[name] = np.atleast_1d(np.asarray(m.result(), np.float64)).tolist()
out['huber'] = [float(keras.losses.Huber(delta=0.3)(y_true, y_pred, sample_weight=w))]
print('JSON' + json.dumps(out))
"""


def keras_values(tmp_dir):
    """The metric values Keras computes on _peer_data (None without a Keras peer)."""
    exe = os.environ.get("FASTCONV_PEER_PYTHON", sys.executable)
    if subprocess.run([exe, "-c", "import keras"], capture_output=True).returncode != 0:
        return None
    y_true, y_pred, w = _peer_data()
    path = os.path.join(tmp_dir, "data.npz")
    np.savez(path, y_true=y_true, y_pred=y_pred, w=w)
    run = subprocess.run([exe, "-c", PEER_SCRIPT, path, json.dumps(PEER_METRICS)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.split("JSON")[-1])


def test_values_match_live_keras(tmp_path):
    want = keras_values(str(tmp_path))
    if want is None:
        pytest.skip("Keras not installed (set FASTCONV_PEER_PYTHON to a Python that has it)")
    _compare(_fastconv_values(), want)


# -- clone_model ------------------------------------------------------------------------------
def _weights_differ(a, b):
    """Every kernel was drawn anew (biases start at zero in both)."""
    pairs = [(u, v) for u, v in zip(a.get_weights(), b.get_weights()) if u.ndim >= 2]
    return pairs and all(not np.array_equal(u, v) for u, v in pairs)


def test_clone_sequential(numpy_backend, rng):
    model = keras.Sequential([layers.Input((6, 6, 2), name="pixels"), layers.Conv2D(3, 3, name="c"),
                              layers.Flatten(), layers.Dense(4, name="out")], name="seq")
    clone = models.clone_model(model)
    assert isinstance(clone, keras.Sequential) and clone.name == "seq"
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert clone.count_params() == model.count_params() and clone.output_shape == model.output_shape
    assert not any(a is b for a, b in zip(clone.layers, model.layers)) and _weights_differ(clone, model)
    clone.set_weights(model.get_weights())  # same architecture: the same weights give the same outputs
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    # clone_function sees every layer; input_tensors gives the input shape.
    seen = []
    other = models.clone_model(model, input_tensors=layers.Input((6, 6, 2)),
                               clone_function=lambda l: seen.append(l.name) or l.__class__.from_config(
                                   {**l.get_config(), "name": "new_" + l.name}))
    assert seen == [l.name for l in model.layers]
    assert [l.name for l in other.layers] == ["new_" + n for n in seen]


def test_clone_functional_keeps_shared_layers_shared(numpy_backend, rng):
    a, b = layers.Input((5,), name="a"), layers.Input((5,), name="b")
    shared = layers.Dense(5, activation="tanh", name="shared")
    merged = layers.add([shared(a), shared(b)])
    model = models.Model([a, b], [layers.Dense(2, name="head")(merged), merged], name="two")
    clone = models.clone_model(model)
    assert clone.name == "two" and clone.count_params() == model.count_params() == 30 + 12
    assert len(clone.layers) == len(model.layers) and _weights_differ(clone, model)
    clone.set_weights(model.get_weights())
    xs = [rng.standard_normal((3, 5)).astype(np.float32) for _ in range(2)]
    for got, want in zip(clone.predict(xs, verbose=0), model.predict(xs, verbose=0)):
        np.testing.assert_array_equal(got, want)
    new_inputs = [layers.Input((5,)), layers.Input((5,))]
    again = models.clone_model(model, input_tensors=new_inputs)
    assert again.inputs == new_inputs
    with pytest.raises(ValueError, match=r"input_tensors must be 2 symbolic tensor"):
        models.clone_model(model, input_tensors=[layers.Input((5,))])
    with pytest.raises(ValueError, match="clone_function must return a Layer"):
        models.clone_model(model, clone_function=lambda layer: None)


class _Registered(keras.Model):
    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = layers.Dense(units)

    def call(self, x):
        return self.dense(x)


class _NoConfig(keras.Model):
    def __init__(self, layer):  # a layer object as argument: not something a config can hold
        super().__init__()
        self.inner = layer

    def call(self, x):
        return self.inner(x)


def test_clone_subclassed_model(numpy_backend):
    model = _Registered(units=4, name="sub")
    model(np.zeros((1, 2), np.float32))
    clone = models.clone_model(model)
    assert type(clone) is _Registered and clone.units == 4 and clone.name == "sub" and clone is not model
    with pytest.raises(ValueError, match="only supported for Sequential and functional models"):
        models.clone_model(model, clone_function=lambda l: l)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = _NoConfig(layers.Dense(2))
    with pytest.raises(ValueError, match="cannot clone subclassed model _NoConfig"):
        models.clone_model(bad)
    with pytest.raises(ValueError, match="model must be a fastconv Model"):
        models.clone_model(layers.Dense(2))


def test_confusion_metrics_take_device_arrays(monkeypatch, rng):
    cuda_emulation.install(monkeypatch)
    from fastconv import cuda as fcuda
    y_true, y_pred = _binary_data(rng, 40)
    for make in (metrics.Precision, metrics.Recall, metrics.AUC):
        host, device = make(), make()
        host.update_state(y_true, y_pred)
        device.update_state(fcuda.to_device(y_true), fcuda.to_device(y_pred))
        assert float(device.result()) == float(host.result())
