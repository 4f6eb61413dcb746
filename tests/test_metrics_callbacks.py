"""Metrics, initializers, regularizers and callbacks (driven hook by hook with a stand-in
model, and through fit)."""
import csv

import numpy as np
import pytest

import fastconv
from fastconv import callbacks, initializers, metrics, regularizers
from fastconv.optimizers import SGD


# -- metrics ----------------------------------------------------------------------------------
def test_metric_values_and_names():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
    labels = np.array([1, 2, 2, 1])
    m = metrics.SparseCategoricalAccuracy()
    m.update_state(labels, probs)
    assert m.result() == 0.5 and m.name == "sparse_categorical_accuracy"
    m.update_state(labels[:2, None], probs[:2])  # (N, 1) labels; running mean over 6
    assert m.result() == pytest.approx(3 / 6)
    m.reset_state()
    assert m.result() == 0.0
    onehot = np.eye(3)[labels]
    assert metrics.CategoricalAccuracy()(onehot, probs) == 0.5
    # top-2: row 1 label 2 (0.3 is second), row 3 label 1 (0.35 second) -> all four
    assert metrics.SparseTopKCategoricalAccuracy(k=2)(labels, probs) == 1.0
    assert metrics.TopKCategoricalAccuracy(k=1)(onehot, probs) == 0.5
    b = metrics.BinaryAccuracy()
    assert b(np.array([1, 0, 1, 0]), np.array([0.7, 0.4, 0.5, 0.9])) == 0.5  # 0.5 is not > 0.5
    assert metrics.BinaryAccuracy(threshold=0.3)(np.array([[1], [0]]), np.array([[0.4], [0.2]])) == 1.0
    assert metrics.Accuracy()(np.array([1, 2, 3]), np.array([1, 0, 3])) == pytest.approx(2 / 3)
    mean = metrics.Mean()
    mean.update_state([1.0, 2.0, 3.0])
    mean.update_state([10.0], sample_weight=[3.0])
    assert mean.result() == pytest.approx((6 + 30) / 6)
    w = metrics.SparseCategoricalAccuracy()
    w.update_state(labels, probs, sample_weight=[1.0, 0.0, 3.0, 0.0])
    assert w.result() == 1.0


def test_top_k_ties_count_as_in():
    assert metrics.SparseTopKCategoricalAccuracy(k=1)([0], [[0.5, 0.5, 0.0]]) == 1.0


def test_metric_shape_errors():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 4\)"):
        metrics.SparseCategoricalAccuracy().update_state(np.zeros(3), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="nope"):
        metrics.get("nope")


@pytest.mark.parametrize("loss,cls", [
    ("sparse_categorical_crossentropy", metrics.SparseCategoricalAccuracy),
    ("categorical_crossentropy", metrics.CategoricalAccuracy),
    ("binary_crossentropy", metrics.BinaryAccuracy)])
def test_get_accuracy_follows_loss(loss, cls):
    m = metrics.get("accuracy", loss=loss)
    assert type(m) is cls and m.name == "accuracy"
    assert metrics.get("acc", loss=loss).name == "acc"

    class SparseCategoricalCrossentropy:  # a loss instance is recognised by its class name
        pass
    assert type(metrics.get("accuracy", loss=SparseCategoricalCrossentropy())) is metrics.SparseCategoricalAccuracy


def test_get_accuracy_without_loss_decides_from_shapes():
    m = metrics.get("accuracy", loss="mse")
    m.update_state(np.array([2, 0]), np.array([[0.1, 0.2, 0.7], [0.1, 0.8, 0.1]]))
    assert m.result() == 0.5
    m = metrics.get("accuracy")
    m.update_state(np.array([1.0, 0.0]), np.array([[0.9], [0.8]]))
    assert m.result() == 0.5


# -- initializers -----------------------------------------------------------------------------
@pytest.mark.parametrize("name,shape,std", [
    ("glorot_uniform", (200, 300), np.sqrt(2 / 500)), ("glorot_normal", (3, 3, 40, 60), np.sqrt(2 / (360 + 540))),
    ("he_uniform", (3, 3, 32, 16), np.sqrt(2 / 288)), ("he_normal", (400, 100), np.sqrt(2 / 400)),
    ("lecun_uniform", (300, 100), np.sqrt(1 / 300)), ("lecun_normal", (5, 5, 16, 8), np.sqrt(1 / 400))])
def test_variance_scaling_statistics(name, shape, std):
    w = initializers.get(name)(shape)
    assert w.dtype == np.float32 and w.shape == shape
    assert abs(w.mean()) < 0.05 * std + 3 * std / np.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=0.04)
    if name.endswith("uniform"):
        assert np.abs(w).max() <= np.sqrt(3) * std * (1 + 1e-6)
        assert np.abs(w).max() > 0.95 * np.sqrt(3) * std
    else:  # truncated at two (pre-correction) standard deviations
        assert np.abs(w).max() <= 2 * std / 0.87962566103423978 * (1 + 1e-6)


def test_simple_initializers():
    assert (initializers.get("zeros")((2, 3)) == 0).all()
    assert (initializers.Ones()((4,)) == 1).all()
    assert (initializers.Constant(2.5)((2,)) == 2.5).all()
    n = initializers.RandomNormal(mean=1.0, stddev=0.5, seed=1)((20000,))
    assert n.mean() == pytest.approx(1.0, abs=0.02) and n.std() == pytest.approx(0.5, rel=0.03)
    u = initializers.RandomUniform(-0.2, 0.4, seed=1)((20000,))
    assert u.min() >= -0.2 and u.max() < 0.4 and u.mean() == pytest.approx(0.1, abs=0.01)
    t = initializers.TruncatedNormal(stddev=0.1, seed=1)((20000,))
    assert np.abs(t).max() <= 0.2 and t.std() == pytest.approx(0.1 * 0.8796, rel=0.04)
    assert initializers.get("GlorotUniform").mode == "fan_avg"
    with pytest.raises(ValueError, match="nope"):
        initializers.get("nope")


def test_initializer_seeding():
    a = initializers.HeNormal(seed=3)((4, 5))
    np.testing.assert_array_equal(a, initializers.HeNormal(seed=3)((4, 5)))
    fastconv.set_seed(7)
    b = initializers.GlorotUniform()((4, 5))
    c = initializers.GlorotUniform()((4, 5))
    fastconv.set_seed(7)
    np.testing.assert_array_equal(b, initializers.GlorotUniform()((4, 5)))
    assert not np.array_equal(b, c)  # the stream moves on between calls


# -- regularizers -----------------------------------------------------------------------------
class FakeTensor:
    """Just the Tensor methods regularizers may use."""

    def __init__(self, a):
        self.a = np.asarray(a, np.float64)

    def abs(self): return FakeTensor(np.abs(self.a))
    def square(self): return FakeTensor(self.a ** 2)
    def sum(self): return FakeTensor(self.a.sum())
    def __mul__(self, k): return FakeTensor(self.a * k)
    def __add__(self, o): return FakeTensor(self.a + o.a)


def test_regularizers():
    x = FakeTensor([1.0, -2.0, 3.0])
    assert regularizers.L1()(x).a == pytest.approx(0.06)
    assert regularizers.l2(0.5)(x).a == pytest.approx(7.0)
    assert regularizers.L1L2(l1=0.1, l2=0.01)(x).a == pytest.approx(0.6 + 0.14)
    assert regularizers.l1_l2()(x).a == 0.0  # Keras 3 defaults
    assert isinstance(regularizers.get("l2"), regularizers.L2) and regularizers.get(None) is None
    with pytest.raises(ValueError, match="l1"):
        regularizers.L1(-1)


# -- callbacks with a stand-in model ----------------------------------------------------------
class StandIn:
    def __init__(self):
        self.w = np.zeros(2)
        self.stop_training = False
        self.optimizer = SGD(0.1)
        self.saved = []

    def get_weights(self):
        return [self.w.copy()]

    def set_weights(self, ws):
        self.w[...] = ws[0]

    def save_weights(self, path):
        np.save(path, self.w) if path.endswith(".npy") else open(path, "w").write(repr(self.w.tolist()))
        self.saved.append(path)

    def save(self, path):  # a whole-model checkpoint records its path the same way
        self.save_weights(path)


def drive(cb, values, key="val_loss"):
    """Run epochs; epoch e has weights [e, e] and logs {key: values[e]}. Returns epochs run."""
    model = StandIn()
    cb.set_model(model)
    cb.on_train_begin()
    ran = []
    for epoch, v in enumerate(values):
        model.w[:] = epoch
        cb.on_epoch_begin(epoch)
        logs = {key: v}
        cb.on_epoch_end(epoch, logs)
        ran.append(logs)
        if model.stop_training:
            break
    cb.on_train_end()
    return model, ran


def test_early_stopping_stops_and_restores_best():
    es = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    model, ran = drive(es, [1.0, 0.8, 0.9, 0.85, 0.95, 0.7])
    assert len(ran) == 4 and es.stopped_epoch == 3
    np.testing.assert_array_equal(model.w, [1, 1])  # epoch 1 had the best val_loss
    es = callbacks.EarlyStopping(patience=1, min_delta=0.25)
    _, ran = drive(es, [1.0, 0.8, 0.9, 0.85])
    assert len(ran) == 2  # 0.8 is not better than 1.0 by more than 0.25
    es = callbacks.EarlyStopping(patience=1, start_from_epoch=2, restore_best_weights=True)
    model, ran = drive(es, [5.0, 6.0, 0.9, 0.85, 0.95, 0.7])
    assert len(ran) == 5 and es.best_epoch == 3
    np.testing.assert_array_equal(model.w, [3, 3])
    es = callbacks.EarlyStopping(monitor="val_accuracy", patience=1)  # auto -> max
    _, ran = drive(es, [0.5, 0.6, 0.55, 0.7], key="val_accuracy")
    assert len(ran) == 3
    with pytest.warns(RuntimeWarning, match="val_loss"):
        drive(callbacks.EarlyStopping(), [1.0], key="loss")


def test_model_checkpoint_best_only(tmp_path):
    pattern = str(tmp_path / "w-{epoch:02d}-{val_loss:.2f}.npz")
    ck = callbacks.ModelCheckpoint(pattern, save_best_only=True, save_weights_only=True)
    model, _ = drive(ck, [0.5, 0.6, 0.4, 0.45])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w-01-0.50.npz", "w-03-0.40.npz"]
    assert (tmp_path / "w-03-0.40.npz").read_text() == "[2.0, 2.0]"
    ck = callbacks.ModelCheckpoint(str(tmp_path / "all-{epoch}.npz"), save_weights_only=True)
    drive(ck, [0.5, 0.6, 0.4])
    assert len(list(tmp_path.glob("all-*.npz"))) == 3
    ck = callbacks.ModelCheckpoint(str(tmp_path / "acc.keras"), monitor="val_acc", save_best_only=True)
    model, _ = drive(ck, [0.5, 0.4, 0.7, 0.6], key="val_acc")
    assert model.saved == [str(tmp_path / "acc.keras")] * 2


def test_reduce_lr_on_plateau():
    cb = callbacks.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.02)
    _, ran = drive(cb, [1.0] * 8)
    np.testing.assert_allclose([r["learning_rate"] for r in ran], [0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02])
    cb = callbacks.ReduceLROnPlateau(factor=0.5, patience=1)
    model, _ = drive(cb, [1.0, 0.9, 0.8])  # always improving: untouched
    assert model.optimizer.learning_rate == 0.1
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.0)


def test_learning_rate_scheduler_and_terminate_on_nan():
    cb = callbacks.LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr * 0.5)
    _, ran = drive(cb, [1.0, 1.0, 1.0])
    np.testing.assert_allclose([r["learning_rate"] for r in ran], [0.1, 0.05, 0.025])
    cb = callbacks.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))
    model, _ = drive(cb, [1.0, 1.0])
    assert model.optimizer.learning_rate == pytest.approx(0.02)
    t = callbacks.TerminateOnNaN()
    model = StandIn()
    t.set_model(model)
    t.on_train_batch_end(0, {"loss": 1.0})
    assert not model.stop_training
    t.on_train_batch_end(1, {"loss": float("inf")})
    assert model.stop_training


def test_csv_logger(tmp_path):
    path = tmp_path / "log.csv"
    cb = callbacks.CSVLogger(str(path), separator=";")
    model = StandIn()
    cb.set_model(model)
    for _ in range(2):
        cb.on_train_begin()
        for e in range(2):
            cb.on_epoch_end(e, {"val_loss": 0.5 + e, "loss": 1.0 / (e + 1)})
        cb.on_train_end()
    rows = list(csv.reader(path.open(), delimiter=";"))
    assert rows == [["epoch", "loss", "val_loss"], ["0", "1.0", "0.5"], ["1", "0.5", "1.5"]]
    cb = callbacks.CSVLogger(str(path), separator=";", append=True)
    cb.set_model(model)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"val_loss": 2.0, "loss": 3.0})
    cb.on_train_end()
    rows = list(csv.reader(path.open(), delimiter=";"))
    assert len(rows) == 4 and rows[-1] == ["0", "3.0", "2.0"]


def test_callback_list_calls_every_hook_and_aliases():
    calls = []

    class Spy(callbacks.Callback):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                calls.append(name)
            return super().__getattribute__(name)

    cl = callbacks.CallbackList([Spy()], add_history=True)
    for hook in ("on_train_begin", "on_test_end", "on_predict_begin"):
        getattr(cl, hook)()
    cl.on_train_batch_end(0, {"loss": 1.0})
    cl.on_epoch_end(0, {"loss": 1.0})
    assert calls == ["on_train_begin", "on_test_end", "on_predict_begin", "on_train_batch_end",
                     "on_batch_end", "on_epoch_end"]
    assert cl.history.history == {"loss": [1.0]} and cl.history.epoch == [0]
