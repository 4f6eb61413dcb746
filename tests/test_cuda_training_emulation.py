"""The Keras workflow on the cuda backend, run on the CPU through tests/cuda_emulation.py:
compile/fit/evaluate/predict give the cpu backend's numbers, weights and optimizer slots stay
on the device, and nothing crosses between host and device inside a training step (counted
by the fake CuPy: reads that would make the host wait for the GPU, copies onto it). The zoo
models' train steps are in test_cuda.py, which runs on this emulation as well."""
import json

import numpy as np
import pytest

import fastconv
from fastconv import layers, losses, models, optimizers

import cuda_emulation
import fake_cupy


@pytest.fixture
def gpu(monkeypatch):
    before = fastconv.get_backend()
    yield cuda_emulation.install(monkeypatch)
    fastconv.set_backend(before)  # the train command sets the backend for the process


def _small_model():
    fastconv.set_seed(3)
    return models.Sequential([
        layers.Input((10, 9, 3)),
        layers.Conv2D(6, 3, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(2),
        layers.DepthwiseConv2D(3, padding="same"),
        layers.Conv2D(5, 1, activation="tanh"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(4),
    ])


def _data(n=40):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 10, 9, 3)).astype(np.float32), rng.integers(0, 4, n)


def _fit(backend, x, y, epochs=3, verbose=0, **kw):
    with fastconv.backend(backend):
        model = _small_model()
        model.compile(optimizers.Adam(1e-2), losses.SparseCategoricalCrossentropy(from_logits=True),
                      ["accuracy"])
        fastconv.set_seed(5)
        with fake_cupy.counting() as traffic:
            history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=verbose, **kw)
    return model, history.history, traffic


@pytest.mark.parametrize("verbose", [0, 2])  # 2: a progress line per epoch, from the epoch logs
def test_fit_matches_the_cpu_and_reads_back_once_per_epoch(gpu, verbose):
    x, y = _data()
    xv, yv = x[:16] + 0.5, y[:16]
    _, want, _ = _fit("cpu", x, y, validation_data=(xv, yv))
    model, got, traffic = _fit("cuda", x, y, verbose=verbose, validation_data=(xv, yv))
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5, err_msg=k)
    epochs = 3
    # Per epoch: the training logs (loss, accuracy) and the validation logs are read once.
    assert traffic["to_host"] == epochs * 4
    # The four arrays are staged on the GPU once; each epoch uploads its shuffled order.
    assert traffic["to_device"] == 4 + epochs
    assert all(isinstance(v.data, fake_cupy.ndarray) for v in model.weights)
    assert all(isinstance(a, fake_cupy.ndarray) for v in model.trainable_weights
               for a in model.optimizer.get_state(v).values())


def test_evaluate_and_predict_read_back_once(gpu):
    x, y = _data(20)
    with fastconv.backend("cpu"):
        cpu = _small_model()
        cpu.compile("sgd", losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
        want_eval, want_pred = cpu.evaluate(x, y, batch_size=6, verbose=0), cpu.predict(x, batch_size=6, verbose=0)
    with fastconv.backend("cuda"):
        model = _small_model()
        model.compile("sgd", losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
        xd, yd = fastconv.cuda.to_device(x), fastconv.cuda.to_device(y)
        with fake_cupy.counting() as t_eval:
            got_eval = model.evaluate(xd, yd, batch_size=6, verbose=0)
        with fake_cupy.counting() as t_pred:
            got_pred = model.predict(xd, batch_size=6, verbose=0)
    np.testing.assert_allclose(got_eval, want_eval, rtol=1e-5)
    assert isinstance(got_pred, np.ndarray)
    np.testing.assert_allclose(got_pred, want_pred, rtol=1e-5, atol=1e-6)
    assert t_eval == {"to_host": 2, "to_device": 0}
    assert t_pred == {"to_host": 1, "to_device": 0}


def test_a_model_built_on_the_host_moves_to_the_device_for_fit(gpu):
    x, y = _data(16)
    model = _small_model()  # cpu backend: NumPy weights
    model.compile("adam", losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # slots created on the host
    with fastconv.backend("cuda"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert all(isinstance(v.data, fake_cupy.ndarray) for v in model.weights)
    fastconv.cuda.model_to_host(model)
    assert all(isinstance(v.data, np.ndarray) for v in model.weights)
    assert all(isinstance(a, np.ndarray) for v in model.trainable_weights
               for a in model.optimizer.get_state(v).values())


def test_host_weights_with_device_gradients_fail_clearly(gpu):
    var = fastconv.autograd.Variable(np.zeros(3, np.float32), name="kernel")
    with pytest.raises(TypeError, match="'kernel' is a host array but its gradient is on the GPU"):
        optimizers.SGD(0.1).apply_gradients([(fake_cupy.asarray(np.ones(3, np.float32)), var)])


@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda: optimizers.Adam(0.01, amsgrad=True),
    lambda: optimizers.AdamW(0.01, weight_decay=0.05, global_clipnorm=0.5),
    lambda: optimizers.RMSprop(0.01, momentum=0.5, clipnorm=0.3),
])
def test_optimizers_update_device_weights_like_host_ones(gpu, make):
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((3, 7)).astype(np.float32)
    grads = [rng.standard_normal((3, 7)).astype(np.float32) for _ in range(4)]
    host = fastconv.autograd.Variable(w0.copy())
    dev = fastconv.autograd.Variable(fake_cupy.asarray(w0))
    opt_h, opt_d = make(), make()
    with fastconv.backend("cuda"), fake_cupy.counting() as traffic:
        for g in grads:
            opt_d.apply_gradients([(fake_cupy.asarray(g), dev)])
    for g in grads:
        opt_h.apply_gradients([(g, host)])
    np.testing.assert_allclose(dev.data.get(), host.data, rtol=1e-5, atol=1e-6)
    assert traffic["to_host"] == 0  # clipping norms stay on the device too


def test_dropout_draws_its_masks_on_the_device(gpu):
    x = fake_cupy.asarray(np.ones((64, 50), np.float32))
    layer = layers.Dropout(0.3)

    def draw():
        fastconv.set_seed(11)
        with fastconv.backend("cuda"):
            return layer(x, training=True).data
    with fake_cupy.counting() as traffic:
        a = draw()
    assert traffic == {"to_host": 0, "to_device": 0}
    a = a.get()
    kept = a != 0
    assert abs(kept.mean() - 0.7) < 0.03
    np.testing.assert_allclose(a[kept], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(draw().get(), a)  # set_seed repeats device masks


def test_the_train_command_runs_on_the_cuda_backend(gpu, tmp_path, capsys):
    from fastconv.__main__ import main
    accuracy = {}
    for backend in ("cpu", "cuda"):
        out = tmp_path / backend
        assert main(["train", "lenet5", "--dataset", "digits", "--epochs", "2", "--limit", "300",
                     "--backend", backend, "--out", str(out), "--verbose", "0"]) == 0
        accuracy[backend] = json.loads((out / "run.json").read_text())["test_accuracy"]
        assert main(["evaluate", str(out / "best.weights.npz")]) == 0
        assert f"test accuracy {accuracy[backend]:.4f}" in capsys.readouterr().out
    assert abs(accuracy["cuda"] - accuracy["cpu"]) <= 1 / 300  # one image may flip on a near tie


def _functional_run(backend, tmp_path):
    from fastconv import callbacks
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 8, 8, 3)).astype(np.float32), rng.integers(0, 3, 32)
    with fastconv.backend(backend):
        fastconv.set_seed(4)
        inp = layers.Input((8, 8, 3))
        h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(4, 3, padding="same")(inp)))
        a = layers.Conv2D(4, 1)(h)
        h = layers.Concatenate()([layers.Add()([h, a]), a])
        out = layers.Dense(3, activation="softmax")(layers.Flatten()(layers.AveragePooling2D(2)(h)))
        model = models.Model(inp, out)
        model.compile("rmsprop", "sparse_categorical_crossentropy", ["accuracy", "sparse_top_k_categorical_accuracy"])
        ckpt = tmp_path / f"{backend}.weights.npz"
        cbs = [callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True),
               callbacks.ModelCheckpoint(str(ckpt), monitor="val_loss", save_best_only=True, save_weights_only=True),
               callbacks.ReduceLROnPlateau(monitor="loss")]
        fastconv.set_seed(5)
        history = model.fit(x, y, batch_size=8, epochs=3, validation_split=0.25, callbacks=cbs,
                            sample_weight=np.linspace(0.5, 1.5, 32), verbose=0).history
        model.load_weights(str(ckpt))
        model.set_weights(model.get_weights())
        return history, model.evaluate(x, y, verbose=0)


def test_functional_model_with_callbacks_and_weight_files_matches_the_cpu(gpu, tmp_path):
    want_hist, want_eval = _functional_run("cpu", tmp_path)
    got_hist, got_eval = _functional_run("cuda", tmp_path)
    assert sorted(got_hist) == sorted(want_hist)
    for k in want_hist:
        np.testing.assert_allclose(got_hist[k], want_hist[k], rtol=1e-4, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(got_eval, want_eval, rtol=1e-4, atol=1e-5)


def test_the_gpu_benchmark_runs_its_fastconv_cases(gpu):
    # GPU time is scarce: benchmarks/bench_gpu.py's fastconv side (every layer and op case,
    # a model step, the fit epoch) runs here on shrunken sizes, so it cannot crash there.
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with fastconv.backend("cuda"):
        for name, n, h, w, cin, cout, k, s, padding, groups in bench.CONV_LAYERS:
            bench.fc_conv((name, 1, min(h, 9), min(w, 9), min(cin, 8), min(cout, 8), k, s, padding,
                           min(groups, 8)))()
        for name, kind, n, h, w, c, p, s, padding in bench.OTHER_OPS:
            bench.fc_op((name, kind, 2, min(h, 8), min(w, 8), min(c, 16), min(p, 16) if kind == "dense" else p,
                         s, padding))()
        bench.fc_model_step("lenet5", 4, (28, 28, 1), 10)()
    assert bench.fit_epoch_seconds(n=64, batch=16) > 0


def test_the_train_command_resumes_on_the_cuda_backend(gpu, tmp_path):
    # The resume state holds device weights and optimizer slots as host arrays; --resume puts
    # them back on the device, and the run ends with the uninterrupted run's weights.
    from fastconv.__main__ import main
    base = ["train", "lenet5", "--dataset", "digits", "--limit", "40", "--batch-size", "16",
            "--backend", "cuda", "--verbose", "0"]
    assert main(base + ["--epochs", "2", "--out", str(tmp_path / "full")]) == 0
    assert main(base + ["--epochs", "1", "--out", str(tmp_path / "cut")]) == 0
    assert main(base + ["--epochs", "2", "--out", str(tmp_path / "cut"), "--resume"]) == 0
    full = np.load(tmp_path / "full" / "last.weights.npz")
    cut = np.load(tmp_path / "cut" / "last.weights.npz")
    assert sorted(full.files) == sorted(cut.files)
    for k in full.files:
        np.testing.assert_array_equal(full[k], cut[k], err_msg=k)
