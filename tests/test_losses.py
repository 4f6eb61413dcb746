"""Keras losses: values against hand-computed NumPy (and the numbers in Keras's documentation),
gradients by float64 central differences, label checks and error messages."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import losses
from fastconv.autograd import Tensor, no_grad
from fastconv.reference.gradcheck import check_grad

import seeds

EPS = 1e-7


@pytest.fixture(autouse=True)
def _numpy_backend():
    # float64 finite differences need the NumPy oracle backend (it keeps the dtype).
    with fc.backend("numpy"):
        yield


def value(loss, y_true, y_pred, **kw):
    return float(loss(y_true, Tensor(np.asarray(y_pred, np.float64)), **kw))


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def grad_check(loss, y_true, y_pred, **kw):
    y_pred = np.asarray(y_pred, np.float64)
    t = Tensor(y_pred, requires_grad=True)
    loss(y_true, t, **kw).backward()

    def f(v):
        with no_grad():
            return float(loss(y_true, Tensor(v), **kw))
    check_grad(f, y_pred, t.grad, rtol=1e-5, atol=1e-8)


# ---- the examples in Keras's documentation (3 decimals there) ----

def test_keras_documentation_examples():
    y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    cce = losses.CategoricalCrossentropy()
    assert value(cce, np.array([[0, 1, 0], [0, 0, 1]]), y_pred) == pytest.approx(1.177, abs=1e-3)
    assert value(cce, np.array([[0, 1, 0], [0, 0, 1]]), y_pred,
                 sample_weight=np.array([0.3, 0.7])) == pytest.approx(0.814, abs=1e-3)
    assert value(losses.SparseCategoricalCrossentropy(), np.array([1, 2]), y_pred) == pytest.approx(1.177, abs=1e-3)
    bce_logits = losses.BinaryCrossentropy(from_logits=True)
    assert value(bce_logits, np.array([0, 1, 0, 0]), [-18.6, 0.51, 2.94, -12.8]) == pytest.approx(0.865, abs=1e-3)
    bce = losses.BinaryCrossentropy()
    yt, yp = np.array([[0, 1], [0, 0]]), [[0.6, 0.4], [0.4, 0.6]]
    assert value(bce, yt, yp) == pytest.approx(0.815, abs=1e-3)
    assert value(bce, yt, yp, sample_weight=np.array([1, 0])) == pytest.approx(0.458, abs=1e-3)
    assert value(losses.MeanSquaredError(), yt, [[1, 1], [1, 0]]) == pytest.approx(0.5)


# ---- exact values by hand ----

def test_sparse_categorical_from_logits_and_probabilities():
    logits = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [0.5, -1.0, 2.0]])
    labels = np.array([2, 0, 1])
    expected = -log_softmax(logits)[np.arange(3), labels].mean()
    assert value(losses.SparseCategoricalCrossentropy(from_logits=True), labels, logits) == pytest.approx(expected, rel=1e-12)
    # Probabilities are normalised to sum 1, then clipped: [1, 1, 2] -> 0.25 for label 0;
    # a zero probability costs -log(1e-7); a certain one -log(1 - 1e-7).
    probs = np.array([[1.0, 1.0, 2.0], [0.0, 0.3, 0.7], [0.0, 1.0, 0.0]])
    expected = np.mean([-np.log(0.25), -np.log(EPS), -np.log(1 - EPS)])
    assert value(losses.SparseCategoricalCrossentropy(), np.array([0, 0, 1]), probs) == pytest.approx(expected, rel=1e-12)
    # (N, 1) labels are the same as (N,)
    assert value(losses.SparseCategoricalCrossentropy(), np.array([[0], [0], [1]]), probs) == pytest.approx(expected, rel=1e-12)


def test_categorical_with_label_smoothing_both_ways():
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]])
    smooth = y * 0.8 + 0.2 / 3
    expected = -(smooth * log_softmax(logits)).sum(-1).mean()
    cce = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    assert value(cce, y, logits) == pytest.approx(expected, rel=1e-12)
    probs = np.array([[0.2, 0.6, 0.2], [0.5, 0.5, 1.0]])  # second row sums to 2: normalised
    p = np.clip(probs / probs.sum(-1, keepdims=True), EPS, 1 - EPS)
    expected = -(smooth * np.log(p)).sum(-1).mean()
    cce = losses.CategoricalCrossentropy(label_smoothing=0.2)
    assert value(cce, y, probs) == pytest.approx(expected, rel=1e-12)


def test_binary_crossentropy_clipping_smoothing_and_logits():
    y = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    p = np.array([[0.9, 0.0, 1.0], [0.3, 0.6, 1.0]])  # 0 and 1 hit the clip
    pc = np.clip(p, EPS, 1 - EPS)
    ys = y * 0.9 + 0.05
    expected = -(ys * np.log(pc) + (1 - ys) * np.log(1 - pc)).mean(-1).mean()
    assert value(losses.BinaryCrossentropy(label_smoothing=0.1), y, p) == pytest.approx(expected, rel=1e-12)
    z = np.array([[2.0, -1.0, 0.3], [-0.5, 4.0, 1.5]])
    sig = 1 / (1 + np.exp(-z))
    expected = -(y * np.log(sig) + (1 - y) * np.log(1 - sig)).mean()
    assert value(losses.BinaryCrossentropy(from_logits=True), y, z) == pytest.approx(expected, rel=1e-12)


def test_mean_squared_error_and_aliases():
    y, p = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[1.5, 2.0], [2.0, 7.0]])
    assert value(losses.get("mse"), y, p) == pytest.approx(((p - y) ** 2).mean(), rel=1e-12)
    assert isinstance(losses.get("mean_squared_error"), losses.MeanSquaredError)
    assert isinstance(losses.get("sparse_categorical_crossentropy"), losses.SparseCategoricalCrossentropy)
    assert isinstance(losses.get("categorical_crossentropy"), losses.CategoricalCrossentropy)
    assert isinstance(losses.get("binary_crossentropy"), losses.BinaryCrossentropy)
    inst = losses.BinaryCrossentropy(from_logits=True)
    assert losses.get(inst) is inst

    def custom(a, b):
        return b.sum()
    assert losses.get(custom) is custom
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("hinge_nonsense")


def test_large_logits_stay_finite_and_exact():
    logits = np.array([[1000.0, 0.0, -1000.0], [-800.0, 800.0, 0.0]])
    sparse = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert value(sparse, np.array([1, 1]), logits) == pytest.approx((1000.0 + 0.0) / 2, rel=1e-12)
    cce = losses.CategoricalCrossentropy(from_logits=True)
    assert value(cce, np.array([[0, 0, 1], [1, 0, 0]]), logits) == pytest.approx((2000.0 + 1600.0) / 2, rel=1e-12)
    bce = losses.BinaryCrossentropy(from_logits=True)
    assert value(bce, np.array([1.0, 1.0, 0.0]), [100.0, -100.0, 100.0]) == pytest.approx(200.0 / 3, rel=1e-12)
    t = Tensor(logits, requires_grad=True)
    sparse(np.array([1, 1]), t).backward()
    assert np.all(np.isfinite(t.grad))
    np.testing.assert_allclose(t.grad, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-12)


def test_sample_weight_is_sum_over_batch_size():
    logits = np.array([[1.0, 2.0], [0.0, 3.0], [2.0, 2.0]])
    labels = np.array([0, 1, 1])
    per = -log_softmax(logits)[np.arange(3), labels]
    w = np.array([2.0, 0.0, 0.5])
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert value(loss, labels, logits, sample_weight=w) == pytest.approx((per * w).sum() / 3, rel=1e-12)
    # (N, T, C) predictions: one weight per sample covers its T positions
    seq = np.stack([logits, logits[::-1]])  # (2, 3, 2)
    seq_labels = np.stack([labels, labels[::-1]])
    per_seq = -log_softmax(seq)[np.arange(2)[:, None], np.arange(3), seq_labels]
    got = value(loss, seq_labels, seq, sample_weight=np.array([1.0, 3.0]))
    assert got == pytest.approx((per_seq * np.array([[1.0], [3.0]])).sum() / 6, rel=1e-12)
    with pytest.raises(ValueError, match="sample_weight"):
        value(loss, labels, logits, sample_weight=np.ones(2))


# ---- gradients by finite differences ----

R = np.random.default_rng(5)


@pytest.fixture(autouse=True)
def _per_test_R(request):
    # Each test draws from its own generator, seeded by its name, so it sees the same numbers
    # run alone (-k) or in the full suite. (Parameters drawn at import come from R as seeded
    # above: import order is fixed, so they reproduce too.)
    global R
    R = seeds.per_test_rng(request)


def interior_probs(n, c):
    return R.uniform(0.2, 1.0, (n, c))  # unnormalised, away from the clip


@pytest.mark.parametrize("loss,y_true,y_pred,kw", [
    (losses.SparseCategoricalCrossentropy(from_logits=True), np.array([0, 2, 1]), R.standard_normal((3, 4)), {}),
    (losses.SparseCategoricalCrossentropy(), np.array([3, 0]), interior_probs(2, 4), {}),
    (losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), np.eye(3)[[0, 2]], R.standard_normal((2, 3)), {}),
    (losses.CategoricalCrossentropy(), np.eye(4)[[1, 3, 0]], interior_probs(3, 4), {}),
    (losses.CategoricalCrossentropy(label_smoothing=0.3), np.eye(4)[[1, 3, 0]], interior_probs(3, 4),
     {"sample_weight": np.array([0.5, 2.0, 1.0])}),
    (losses.BinaryCrossentropy(), np.array([[1, 0], [0, 0], [1, 1]]), R.uniform(0.1, 0.9, (3, 2)), {}),
    (losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2), np.array([1.0, 0.0, 1.0]),
     np.array([3.0, -0.7, -2.0]), {}),
    (losses.MeanSquaredError(), R.standard_normal((2, 3)), R.standard_normal((2, 3)),
     {"sample_weight": np.array([1.0, 0.25])}),
])
def test_loss_gradients(loss, y_true, y_pred, kw):
    grad_check(loss, y_true, y_pred, **kw)


def test_clipped_probability_has_zero_gradient_like_keras():
    t = Tensor(np.array([[0.0, 1.0]]), requires_grad=True)
    losses.SparseCategoricalCrossentropy()(np.array([0]), t).backward()
    np.testing.assert_array_equal(t.grad, [[0.0, 0.0]])


# ---- dtype and errors ----

def test_float32_predictions_give_float32_loss():
    out = losses.CategoricalCrossentropy()(np.eye(3)[[0, 1]], Tensor(np.full((2, 3), 1 / 3, np.float32)))
    assert out.dtype == np.float32 and out.shape == ()
    assert float(out) == pytest.approx(np.log(3), rel=1e-6)


def test_sparse_labels_out_of_range_name_the_range():
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(ValueError, match=r"\[0, 3\)"):
            loss(np.array(bad), Tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="integer"):
        loss(np.array([0.5, 1.0]), Tensor(np.zeros((2, 3))))


def test_batch_mismatch_names_both_shapes():
    for loss, y_true in [(losses.SparseCategoricalCrossentropy(), np.array([0, 1, 2])),
                         (losses.CategoricalCrossentropy(), np.eye(3)),
                         (losses.MeanSquaredError(), np.zeros((3, 3)))]:
        with pytest.raises(ValueError, match=r"\(3,.*\(2, 3\)"):
            loss(y_true, Tensor(np.full((2, 3), 0.3)))
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(2, 3\)"):
        losses.CategoricalCrossentropy()(np.eye(2), Tensor(np.full((2, 3), 0.3)))
