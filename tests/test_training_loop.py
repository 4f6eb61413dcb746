"""fit / evaluate / predict with a stand-in model: a numpy linear regression trained by a real
optimizer, recording every batch it sees."""
import io
import warnings

import numpy as np
import pytest

import fastconv
from fastconv import callbacks, training
from fastconv.optimizers import SGD, Adam
from fastconv.training.progbar import Progbar


class Var:
    def __init__(self, a, name):
        self.data, self.name = np.array(a, np.float32), name


class Linear:
    """y = x @ w + b with MSE; steps return running means since reset_metrics (Keras)."""

    metrics_names = ["loss", "mae"]

    def __init__(self, nin=1, optimizer=None, nan_at=None):
        self.w, self.b = Var(np.zeros((nin, 1)), "w"), Var(np.zeros(1), "b")
        self.optimizer = optimizer or SGD(0.1)
        self.train_x, self.test_x, self.nan_at, self.steps = [], [], nan_at, 0
        self.reset_metrics()

    def reset_metrics(self):
        self._sum = np.zeros(2)
        self._n = 0

    def _metrics(self, x, y):
        err = x @ self.w.data + self.b.data - y.reshape(-1, 1)
        self._sum += [np.sum(err ** 2), np.sum(np.abs(err))]
        self._n += len(x)
        return err, {"loss": float(self._sum[0] / self._n), "mae": float(self._sum[1] / self._n)}

    def train_step(self, x, y):
        self.train_x.append(x[:, 0].copy())
        self.steps += 1
        err, logs = self._metrics(x, y)
        gw, gb = 2 * x.T @ err / len(x), 2 * err.mean(0)
        self.optimizer.apply_gradients([(gw, self.w), (gb, self.b)])
        if self.nan_at == self.steps:
            logs["loss"] = float("nan")
        return logs

    def test_step(self, x, y):
        self.test_x.append(x[:, 0].copy())
        return self._metrics(x, y)[1]

    def predict_step(self, x):
        return x @ self.w.data + self.b.data

    def get_weights(self):
        return [self.w.data.copy(), self.b.data.copy()]

    def set_weights(self, ws):
        self.w.data[...], self.b.data[...] = ws


def data(n=10):
    x = np.arange(n, dtype=np.float32)[:, None]
    return x, 2 * x[:, 0] + 1


def test_history_keys_and_learning():
    x = np.arange(64, dtype=np.float32)[:, None] / 64
    y = 2 * x[:, 0] + 1
    model = Linear(optimizer=Adam(0.05))
    hist = training.fit(model, x, y, batch_size=8, epochs=60, verbose=0, validation_data=(x[:16], y[:16]))
    assert list(hist.history) == ["loss", "mae", "val_loss", "val_mae"]
    assert all(len(v) == 60 for v in hist.history.values()) and hist.epoch == list(range(60))
    assert hist.history["loss"][-1] < 1e-2 * hist.history["loss"][0]
    np.testing.assert_allclose([model.w.data[0, 0], model.b.data[0]], [2.0, 1.0], atol=0.1)
    assert model.optimizer.iterations == 60 * 8


def test_epoch_logs_are_means_over_the_epoch():
    x, y = data(10)
    model = Linear(optimizer=SGD(0.0))  # frozen: loss is the plain mean over all samples
    hist = training.fit(model, x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert hist.history["loss"][0] == pytest.approx(np.mean(y ** 2))


def test_validation_split_takes_last_samples_and_partial_batches():
    x, y = data(10)
    model = Linear(optimizer=SGD(0.0))
    training.fit(model, x, y, batch_size=4, epochs=1, verbose=0, validation_split=0.3, shuffle=False)
    assert [b.tolist() for b in model.train_x] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [b.tolist() for b in model.test_x] == [[7, 8, 9]]
    model = Linear()
    training.fit(model, x, y, batch_size=4, epochs=1, verbose=0, validation_split=0.3,
                 validation_batch_size=2, shuffle=True)
    assert sorted(np.concatenate(model.train_x).tolist()) == list(range(7))
    assert [len(b) for b in model.test_x] == [2, 1]


def test_shuffle_is_seeded_and_per_epoch():
    x, y = data(12)
    orders = []
    for _ in range(2):
        fastconv.set_seed(4)
        model = Linear(optimizer=SGD(0.0))
        training.fit(model, x, y, batch_size=5, epochs=3, verbose=0)
        assert [len(b) for b in model.train_x] == [5, 5, 2] * 3
        epochs = [np.concatenate(model.train_x[i:i + 3]) for i in (0, 3, 6)]
        for e in epochs:
            assert sorted(e.tolist()) == list(range(12))  # each sample once per epoch
        orders.append(epochs)
    for a, b in zip(*orders):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(orders[0][0], orders[0][1])
    assert not np.array_equal(orders[0][0], np.arange(12))


def test_bad_lengths_and_arguments():
    x, y = data(10)
    with pytest.raises(ValueError, match=r"10.*7"):
        training.fit(Linear(), x, y[:7], verbose=0)
    with pytest.raises(ValueError, match="verbose"):
        training.fit(Linear(), x, y, verbose=3)
    with pytest.raises(ValueError, match="batch_size"):
        training.fit(Linear(), x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        training.fit(Linear(), x, y, validation_split=1.0, verbose=0)
    with pytest.raises(ValueError, match="iterable"):
        training.fit(Linear(), iter([(x, y)]), y, verbose=0)


def test_nan_loss_stops_training_with_a_warning():
    x, y = data(10)
    model = Linear(nan_at=4)
    with pytest.warns(RuntimeWarning, match=r"nan at epoch 2, batch 1"):
        hist = training.fit(model, x, y, batch_size=4, epochs=5, verbose=0, shuffle=False)
    assert model.steps == 4 and len(hist.history["loss"]) == 2 and np.isnan(hist.history["loss"][-1])


def test_callbacks_stop_mid_epoch_and_initial_epoch():
    class StopAt(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    x, y = data(10)
    model = Linear()
    hist = training.fit(model, x, y, batch_size=2, epochs=5, verbose=0, callbacks=[StopAt()])
    assert model.steps == 2 and hist.epoch == [0]
    hist = training.fit(Linear(), x, y, epochs=4, initial_epoch=2, verbose=0)
    assert hist.epoch == [2, 3]


def test_fit_with_early_stopping_and_csv(tmp_path):
    x, y = data(20)
    model = Linear(optimizer=SGD(0.02))
    log = tmp_path / "log.csv"
    hist = training.fit(model, x / 20, y, epochs=30, verbose=0, validation_split=0.25, callbacks=[
        callbacks.EarlyStopping(monitor="loss", min_delta=10.0), callbacks.CSVLogger(str(log))])
    assert len(hist.epoch) < 30
    lines = log.read_text().splitlines()
    assert lines[0] == "epoch,loss,mae,val_loss,val_mae" and len(lines) == len(hist.epoch) + 1
    assert float(lines[1].split(",")[1]) == pytest.approx(hist.history["loss"][0])


def test_iterables_and_steps_per_epoch():
    x, y = data(10)
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    model = Linear(optimizer=SGD(0.0))
    hist = training.fit(model, batches, epochs=3, verbose=0, validation_data=batches)
    assert model.steps == 6 and len(hist.history["val_loss"]) == 3

    def gen():
        for i in range(0, 10, 5):
            yield x[i:i + 5], y[i:i + 5]
    model = Linear()
    with pytest.warns(RuntimeWarning, match="ran out of data"):
        hist = training.fit(model, gen(), epochs=3, verbose=0)
    assert model.steps == 2 and hist.epoch == [0]
    model = Linear()
    training.fit(model, x, y, batch_size=4, epochs=2, steps_per_epoch=2, verbose=0, shuffle=False)
    assert [b.tolist()[0] for b in model.train_x] == [0, 4, 8, 0]  # arrays restart when used up


def test_evaluate_and_predict():
    x, y = data(10)
    model = Linear()
    model.w.data[:] = 2.0
    ev = training.evaluate(model, x, y, batch_size=3, verbose=0, return_dict=True)
    assert ev == {"loss": pytest.approx(1.0), "mae": pytest.approx(1.0)}
    assert training.evaluate(model, x, y, verbose=0) == [pytest.approx(1.0), pytest.approx(1.0)]
    assert [len(b) for b in model.test_x[:4]] == [3, 3, 3, 1]
    pred = training.predict(model, x, batch_size=4, verbose=0)
    assert pred.shape == (10, 1) and pred.dtype == np.float32
    np.testing.assert_allclose(pred[:, 0], 2 * x[:, 0])
    pred = training.predict(model, [(x[:3], y[:3]), (x[3:], y[3:])], verbose=0)  # x taken from tuples
    assert pred.shape == (10, 1)

    class Two(Linear):
        def predict_step(self, x):
            return {"a": x, "b": (x * 2, x[:, 0])}
    out = training.predict(Two(), x, batch_size=3, verbose=0)
    np.testing.assert_array_equal(out["b"][0], 2 * x)
    assert out["b"][1].shape == (10,)


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progbar_terminal_and_plain():
    tty = Tty()
    bar = Progbar(10, verbose=1, stream=tty, interval=0.0)
    for i in range(1, 11):
        bar.update(i, {"loss": 0.5})
    bar.update(10, {"loss": 0.25, "val_loss": 1e-5}, finalize=True)
    text = tty.getvalue()
    assert text.count("\r") == 11 and "ETA:" in text and text.endswith("\n")
    assert "10/10 [==============================]" in text and "val_loss: 1.0000e-05" in text
    slow = Tty()
    bar = Progbar(100, verbose=1, stream=slow, interval=60.0)
    for i in range(1, 101):
        bar.update(i, {"loss": 1.0})
    bar.update(100, {"loss": 1.0}, finalize=True)
    assert slow.getvalue().count("\r") == 2  # throttled: first draw and the final one
    plain = io.StringIO()
    bar = Progbar(5, verbose=1, stream=plain)
    for i in range(1, 6):
        bar.update(i, {"loss": 0.5})
    bar.update(5, {"loss": 0.5}, finalize=True)
    assert "\r" not in plain.getvalue() and plain.getvalue().count("\n") == 1
    assert plain.getvalue().startswith("5/5 - ") and plain.getvalue().rstrip().endswith("loss: 0.5000")


@pytest.mark.parametrize("verbose", [1, 2])
def test_fit_prints_one_line_per_epoch_off_terminal(capsys, verbose):
    x, y = data(10)
    training.fit(Linear(), x / 10, y, batch_size=4, epochs=2, verbose=verbose, validation_split=0.2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2" and len(out) == 4
    assert out[1].startswith("2/2 - ") and " - loss: " in out[1] and " - val_mae: " in out[1]
    training.evaluate(Linear(), x, y, verbose=0)
    training.predict(Linear(), x, verbose=0)
    assert capsys.readouterr().out == ""
