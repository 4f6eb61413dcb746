"""Keras compatibility pieces of issue 16, one section per item: keras.utils helpers, Keras 2
spellings, more learning-rate schedules, more callbacks."""
import math
import os

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv import models, utils


# --- 1. fastconv.utils --------------------------------------------------------------------------

def test_to_categorical_values_and_shapes():
    out = utils.to_categorical([2, 0, 1])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    # (n, 1) labels lose their trailing axis, as in Keras
    assert utils.to_categorical(np.array([[1], [3]]), 5).shape == (2, 5)
    np.testing.assert_array_equal(utils.to_categorical(np.array([[1], [3]]), 5)[1], [0, 0, 0, 1, 0])
    # other shapes gain a class axis
    grid = utils.to_categorical(np.array([[0, 1], [1, 0]]), num_classes=2)
    assert grid.shape == (2, 2, 2) and grid[0, 1].tolist() == [0.0, 1.0]
    assert utils.to_categorical(np.array([1.0, 0.0]), 2).tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_to_categorical_rejects_bad_labels():
    with pytest.raises(ValueError, match=">= 0"):
        utils.to_categorical([0, -1, 2])
    with pytest.raises(ValueError, match="out of range for num_classes=3"):
        utils.to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match="integer"):
        utils.to_categorical([0.5, 1])


def test_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(utils.normalize(x), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(utils.normalize(x, axis=0, order=1), [[1.0, 1.0], [0.0, 0.0]])


def test_set_random_seed_is_set_seed():
    utils.set_random_seed(3)
    a = fastconv.random.generator("init").random()
    fastconv.random.set_seed(3)
    assert fastconv.random.generator("init").random() == a


def _residual_model():
    x = L.Input((8, 8, 3))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    h = L.Conv2D(3, 3, padding="same")(h)
    h = L.Activation("relu")(L.add([h, x]))
    head = models.Sequential([L.GlobalAveragePooling2D(), L.Dense(2)], name="head")
    return models.Model(x, head(h))


def test_model_to_graph_follows_edges():
    m = _residual_model()
    nodes, edges = utils.model_to_graph(m)
    names = [n["kind"] for n in nodes]
    assert names == ["InputLayer", "Conv2D", "Conv2D", "Add", "Activation", "Sequential"]
    # the shortcut input -> add is an edge, besides the main path
    assert sorted(edges) == [(0, 1), (0, 3), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert nodes[3]["inputs"] == "(None, 8, 8, 3), (None, 8, 8, 3)" and nodes[5]["outputs"] == "(None, 2)"
    seq_nodes, seq_edges = utils.model_to_graph(models.Sequential([L.Input((4,)), L.Dense(3), L.Dense(1)]))
    assert [n["outputs"] for n in seq_nodes] == ["(None, 3)", "(None, 1)"] and seq_edges == [(0, 1)]


def test_plot_model_draws_a_picture(tmp_path):
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / "model.png"
    assert utils.plot_model(_residual_model(), to_file=str(path), show_shapes=True) == str(path)
    assert path.stat().st_size > 10_000
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert img.shape[0] > img.shape[1] > 200  # six rows top to bottom
    # not blank: a good share of the pixels are box fill, text or lines, not white background
    assert (img.min(-1) < 250).mean() > 0.2
    # six rows of boxes (one per depth; the two branches meet at the add): count the bands of
    # image rows holding the boxes' fill colour
    fill = (np.abs(img - [0xDD, 0xE8, 0xF5]) <= 3).all(-1).any(1)
    assert np.count_nonzero(fill[1:] & ~fill[:-1]) + fill[0] == 6
    seq = tmp_path / "seq.svg"
    utils.plot_model(models.Sequential([L.Input((4,)), L.Dense(3)]), to_file=str(seq), rankdir="LR")
    assert seq.read_text().lstrip().startswith("<?xml")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_plot_model_without_matplotlib(monkeypatch, tmp_path):
    import builtins
    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r'pip install "fastconv\[viz\]"'):
        utils.plot_model(_residual_model(), to_file=str(tmp_path / "m.png"))


def test_image_dataset_from_directory_prints_keras_lines(tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    for name, count in (("a", 3), ("b", 2)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name / f"{i}.png")
    assert utils.image_dataset_from_directory is fastconv.data.image_dataset_from_directory
    utils.image_dataset_from_directory(tmp_path, image_size=(4, 4))
    assert capsys.readouterr().out == "Found 5 files belonging to 2 classes.\n"
    utils.image_dataset_from_directory(tmp_path, image_size=(4, 4), validation_split=0.4,
                                       subset="both", seed=1)
    assert capsys.readouterr().out == ("Found 5 files belonging to 2 classes.\n"
                                       "Using 3 files for training.\nUsing 2 files for validation.\n")
    utils.image_dataset_from_directory(tmp_path, image_size=(4, 4), validation_split=0.4,
                                       subset="validation", seed=1)
    assert capsys.readouterr().out.splitlines()[-1] == "Using 2 files for validation."


# --- 2. Keras 2 spellings -----------------------------------------------------------------------

class _Var:
    def __init__(self, values):
        self.data, self.name = np.array(values, np.float32), "w"


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_lr_is_learning_rate_with_a_deprecation_warning(name):
    cls = getattr(fastconv.optimizers, name)
    with pytest.warns(DeprecationWarning, match="lr= is the Keras 2 name"):
        opt = cls(lr=0.123)
    assert opt.learning_rate == 0.123
    # the same updates as with learning_rate=
    a, b = _Var([1.0, -2.0]), _Var([1.0, -2.0])
    ref = cls(learning_rate=0.123)
    for _ in range(3):
        opt.apply_gradients([(np.array([0.5, 0.25], np.float32), a)])
        ref.apply_gradients([(np.array([0.5, 0.25], np.float32), b)])
    np.testing.assert_array_equal(a.data, b.data)


def test_decay_is_keras2_inverse_time_decay():
    with pytest.warns(DeprecationWarning, match="decay="):
        opt = fastconv.optimizers.SGD(learning_rate=0.1, decay=0.5)
    w, expected = _Var([1.0]), 1.0
    for step in range(4):
        opt.apply_gradients([(np.array([1.0], np.float32), w)])
        expected -= 0.1 / (1 + 0.5 * step)  # lr_t = lr / (1 + decay * iterations), before the step
        np.testing.assert_allclose(w.data, [expected], rtol=1e-6)
    assert opt.learning_rate == 0.1  # the base rate, as Keras 2's optimizer.lr
    assert opt.get_config()["decay"] == 0.5
    with pytest.raises(ValueError, match="decay"):
        fastconv.optimizers.SGD(decay=-1.0)


@pytest.mark.parametrize("alias, cls, config", [
    ("uniform", "RandomUniform", {"minval": -0.05, "maxval": 0.05}),
    ("normal", "RandomNormal", {"mean": 0.0, "stddev": 0.05}),
    ("zero", "Zeros", {}), ("one", "Ones", {})])
def test_keras2_initializer_names(alias, cls, config):
    with pytest.warns(DeprecationWarning, match="Keras 2 name"):
        init = fastconv.initializers.get(alias)
    assert type(init).__name__ == cls
    assert {k: init.get_config()[k] for k in config} == config
    with pytest.warns(DeprecationWarning):
        layer = L.Dense(3, kernel_initializer=alias)
        layer.build((None, 2))
    kernel = np.asarray(layer.get_weights()[0])
    if alias in ("zero", "one"):
        assert (kernel == (alias == "one")).all()
    else:
        assert np.abs(kernel).max() < (0.05 if alias == "uniform" else 0.5) and kernel.std() > 0


def test_metric_reset_states_and_result_numpy():
    m = fastconv.metrics.SparseCategoricalAccuracy()
    m.update_state([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    r = m.result()
    assert r == 0.5 and isinstance(r, float)
    assert r.numpy() == np.float32(0.5) and r.numpy().dtype == np.float32
    assert f"{r:.2f}" == "0.50" and repr(r) == "0.5"
    with pytest.warns(DeprecationWarning, match="reset_state"):
        m.reset_states()
    assert m.result() == 0.0 and m.result().numpy() == 0.0
    assert fastconv.metrics.get("accuracy").result().numpy() == 0.0


def test_fit_logs_and_history_stay_plain_floats():
    fastconv.set_seed(0)
    m = models.Sequential([L.Input((3,)), L.Dense(2)])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32), np.arange(8) % 2
    h = m.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert all(type(v) is float for vs in h.history.values() for v in vs)


# --- 3. learning-rate schedules -----------------------------------------------------------------

def test_inverse_time_decay():
    from fastconv.optimizers.schedules import InverseTimeDecay
    s = InverseTimeDecay(0.1, decay_steps=4, decay_rate=0.5)
    for step in (0, 1, 4, 7, 100):
        assert s(step) == pytest.approx(0.1 / (1 + 0.5 * step / 4))
    st = InverseTimeDecay(0.1, decay_steps=4, decay_rate=0.5, staircase=True)
    assert [st(k) for k in (0, 3, 4, 7, 8)] == pytest.approx([0.1, 0.1, 0.1 / 1.5, 0.1 / 1.5, 0.1 / 2])
    again = InverseTimeDecay.from_config(st.get_config())
    assert again.get_config() == st.get_config() and again(9) == st(9)
    with pytest.raises(ValueError, match="decay_steps"):
        InverseTimeDecay(0.1, 0, 0.5)


def test_polynomial_decay():
    from fastconv.optimizers.schedules import PolynomialDecay
    s = PolynomialDecay(0.1, decay_steps=10, end_learning_rate=0.01, power=2.0)
    for step in (0, 3, 10, 25):
        t = min(step, 10)
        assert s(step) == pytest.approx((0.1 - 0.01) * (1 - t / 10) ** 2 + 0.01)
    assert PolynomialDecay(1.0, 10)(5) == pytest.approx((1.0 - 0.0001) * 0.5 + 0.0001)
    cyc = PolynomialDecay(0.1, decay_steps=10, end_learning_rate=0.0, cycle=True)
    # at step 15 the period is 20 (the next multiple of 10): (1 - 15/20) * 0.1
    assert [cyc(k) for k in (0, 10, 15, 20, 21)] == pytest.approx(
        [0.1, 0.0, 0.1 * (1 - 15 / 20), 0.0, 0.1 * (1 - 21 / 30)])
    again = PolynomialDecay.from_config(cyc.get_config())
    assert again.get_config() == cyc.get_config() and again(15) == cyc(15)


def test_schedule_drives_an_optimizer():
    from fastconv.optimizers.schedules import InverseTimeDecay
    opt = fastconv.optimizers.SGD(learning_rate=InverseTimeDecay(0.1, 1, 0.5))
    w, expected = _Var([0.0]), 0.0
    for step in range(3):
        opt.apply_gradients([(np.array([1.0], np.float32), w)])
        expected -= 0.1 / (1 + 0.5 * step)  # the same steps as Keras 2's decay=0.5
    np.testing.assert_allclose(w.data, [expected], rtol=1e-6)


# --- 4. callbacks -------------------------------------------------------------------------------

from fastconv import callbacks as C  # noqa: E402


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _model(seed=0, dropout=True):
    fastconv.set_seed(seed)
    stack = [L.Input((6,)), L.Dense(8, activation="relu")] + ([L.Dropout(0.3)] if dropout else []) + [L.Dense(2)]
    m = models.Sequential(stack)
    m.compile(optimizer=fastconv.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def test_terminate_on_nan_stops_fit(capsys):
    x, y = _data()
    x[5, 0] = np.nan  # in the second batch of 4 (no shuffling)
    m = _model()
    with pytest.warns(RuntimeWarning, match="loss became nan"):
        h = m.fit(x, y, epochs=3, batch_size=4, shuffle=False, verbose=0, callbacks=[C.TerminateOnNaN()])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    assert m.stop_training and len(h.history["loss"]) == 1 and math.isnan(h.history["loss"][0])


def test_history_and_progbar_logger_are_keras_callbacks():
    x, y = _data()
    m = _model()
    history = C.History()
    out = m.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[history, C.ProgbarLogger()])
    assert out is history and history.epoch == [0, 1] and len(history.history["accuracy"]) == 2


def test_lambda_callback_calls_each_hook():
    calls = []
    cb = C.LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: calls.append(f"epoch_begin {epoch}"),
        on_batch_end=lambda batch, logs: calls.append(f"batch_end {batch} {sorted(logs)}"),
        on_epoch_end=lambda epoch, logs: calls.append(f"epoch_end {epoch} {logs['loss'] > 0}"),
        on_train_end=lambda logs: calls.append("train_end"))
    x, y = _data(8)
    _model().fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[cb])
    batch = "batch_end {} ['accuracy', 'loss']"
    assert calls == ["train_begin", "epoch_begin 0", batch.format(0), batch.format(1), "epoch_end 0 True",
                     "epoch_begin 1", batch.format(0), batch.format(1), "epoch_end 1 True", "train_end"]
    with pytest.raises(TypeError, match="unknown hook"):
        C.LambdaCallback(on_epoch_finish=print)


class _Interrupt(C.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt("simulated interruption at epoch 3")


def test_backup_and_restore_resumes_bit_for_bit(tmp_path):
    x, y = _data(40)
    fit = dict(x=x, y=y, batch_size=8, verbose=0)  # shuffled batches and dropout: random streams matter
    reference = _model()
    reference.fit(epochs=4, **fit)

    backup = tmp_path / "backup"
    m = _model()
    with pytest.raises(KeyboardInterrupt):
        m.fit(epochs=4, callbacks=[C.BackupAndRestore(backup), _Interrupt()], **fit)
    assert os.listdir(backup) == ["backup.npz"]  # two finished epochs saved
    fastconv.set_seed(123)  # the restore brings back the random streams, whatever happened since
    h = m.fit(epochs=4, callbacks=[C.BackupAndRestore(backup)], **fit)
    assert h.epoch == [2, 3]  # resumed at epoch 3 (index 2)
    for got, want in zip(m.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert m.optimizer.iterations == reference.optimizer.iterations == 20
    assert os.listdir(backup) == []  # a finished run deletes its backup


def test_backup_and_restore_in_a_fresh_model_and_bad_files(tmp_path):
    x, y = _data(16)
    m = _model(dropout=False)
    m.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[C.BackupAndRestore(tmp_path, delete_checkpoint=False)])
    assert os.path.isfile(tmp_path / "backup.npz")
    fresh = _model(seed=5, dropout=False)  # as a new process would build it
    h = fresh.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[C.BackupAndRestore(tmp_path)])
    assert h.epoch == []  # both epochs were already done
    for got, want in zip(fresh.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(got, want)
    (tmp_path / "backup.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot restore from .*backup.npz.*delete it"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[C.BackupAndRestore(tmp_path)])
    with pytest.raises(ValueError, match="save_freq='epoch' only"):
        C.BackupAndRestore(tmp_path, save_freq=10)


def _read_events(folder):
    import struct
    from tensorboardX.proto.event_pb2 import Event
    [name] = os.listdir(folder)
    assert "tfevents" in name
    data, events = open(os.path.join(folder, name), "rb").read(), []
    while data:
        (n,) = struct.unpack("<Q", data[:8])
        events.append(Event.FromString(data[12:12 + n]))
        data = data[12 + n + 4:]
    return events


def test_tensorboard_writes_epoch_scalars(tmp_path):
    pytest.importorskip("tensorboardX")
    x, y = _data(16)
    m = _model()
    h = m.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_data=(x[:8], y[:8]),
              callbacks=[C.TensorBoard(log_dir=tmp_path / "logs")])
    train = _read_events(tmp_path / "logs" / "train")
    assert train[0].file_version == "brain.Event:2"
    scalars = {}
    for e in train[1:] + _read_events(tmp_path / "logs" / "validation")[1:]:
        for v in e.summary.value:
            scalars.setdefault(v.tag, []).append((e.step, v.simple_value))
    assert sorted(scalars) == ["epoch_accuracy", "epoch_loss"]
    losses = [(i, pytest.approx(v, rel=1e-6)) for i, v in enumerate(h.history["loss"])]
    val = [(i, pytest.approx(v, rel=1e-6)) for i, v in enumerate(h.history["val_loss"])]
    assert scalars["epoch_loss"] == losses + val
    assert not [p for p in os.listdir(tmp_path / "logs" / "train") if p.endswith(".tmp")]


def test_tensorboard_without_tensorboardx(monkeypatch):
    import builtins
    real = builtins.__import__

    def missing(name, *args, **kwargs):
        if name.startswith("tensorboardX"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", missing)
    with pytest.raises(ImportError, match=r'pip install "fastconv\[tensorboard\]"'):
        C.TensorBoard("logs")


def test_loss_tracker_result_has_numpy():
    x, y = _data(8)
    m = _model()
    m.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert [type(mt.result().numpy()) for mt in m.metrics] == [np.float32, np.float32]


def test_progbar_logger_accepts_keras2_arguments():
    x, y = _data(8)
    import io
    out = io.StringIO()
    _model().fit(x, y, epochs=1, batch_size=4, verbose=2,
                 callbacks=[C.ProgbarLogger(count_mode="samples", stream=out)])
    assert "loss" in out.getvalue()


def test_tensorboard_batch_scalars(tmp_path):
    pytest.importorskip("tensorboardX")
    x, y = _data(16)
    _model().fit(x, y, epochs=2, batch_size=4, verbose=0,
                 callbacks=[C.TensorBoard(log_dir=tmp_path, update_freq=2)])
    steps = {}
    for e in _read_events(tmp_path / "train")[1:]:
        for v in e.summary.value:
            steps.setdefault(v.tag, []).append(e.step)
    assert steps["batch_loss"] == [2, 4, 6, 8] and steps["epoch_loss"] == [0, 1]


def test_model_to_graph_of_a_subclassed_model_is_one_box():
    class Net(models.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = L.Dense(3), L.Dense(1)

        def call(self, x):
            return self.b(self.a(x))

    net = Net()
    net.build((None, 4))
    nodes, edges = utils.model_to_graph(net)
    assert [n["kind"] for n in nodes] == ["Net"] and edges == []
