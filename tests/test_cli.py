"""The ``fastconv`` command line: info, data set selection, and a real short training run."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastconv.__main__ import load_dataset, main, split_validation
from fastconv.datasets import _files


def test_info_reports_version_backends_and_blas(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "fastconv: 0.1.0" in out
    assert "cpu: available" in out
    assert "cuda_available:" in out
    blas = [ln for ln in out.splitlines() if ln.startswith("blas:")][0]
    assert "openblas" in blas.lower()


def test_python_dash_m_entry_point(tmp_path):
    # Import the fastconv these tests import (installed or dev tree), never a stray source tree.
    import fastconv
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastconv.__file__)))
    r = subprocess.run([sys.executable, "-m", "fastconv", "--help"], capture_output=True, text=True,
                       env=env, timeout=60, cwd=tmp_path)
    assert r.returncode == 0 and "train" in r.stdout and "info" in r.stdout


def test_default_dataset_falls_back_to_digits_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    from fastconv.datasets import fashion_mnist
    monkeypatch.setattr(fashion_mnist, "SPEC", _files.Spec(
        name="fashion-mnist", mirrors=fashion_mnist.SPEC.mirrors, sha256=fashion_mnist.SPEC.sha256))
    (x, y), (xt, yt), name = load_dataset(None, seed=0, limit=50)
    assert name == "digits"
    assert "using the embedded UCI digits set" in capsys.readouterr().err
    assert x.shape == (50, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0.0 == x.min() and x.max() == 1.0
    with pytest.raises(ValueError, match="--dataset must be one of"):
        load_dataset("no-such-set")


def test_missing_fashion_mnist_is_a_clear_cli_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setattr(_files, "_urlopen", lambda url, timeout: (_ for _ in ()).throw(OSError("offline")))
    from fastconv.datasets import fashion_mnist
    monkeypatch.setattr(fashion_mnist, "SPEC", _files.Spec(
        name="fashion-mnist", mirrors=fashion_mnist.SPEC.mirrors, sha256=fashion_mnist.SPEC.sha256,
        debian_package="dataset-fashion-mnist"))
    rc = main(["train", "lenet5", "--dataset", "fashion-mnist", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "dataset-fashion-mnist" in err and "train-images-idx3-ubyte.gz" in err


def test_split_validation_is_seeded_and_disjoint():
    x = np.arange(100)
    (a, ya), (b, yb) = split_validation(x, x, 0.2, seed=3)
    assert len(a) == 80 and len(b) == 20 and not set(a) & set(b)
    (a2, _), _ = split_validation(x, x, 0.2, seed=3)
    np.testing.assert_array_equal(a, a2)


def test_train_digits_end_to_end(tmp_path, capsys):
    for mod in ("fastconv.models", "fastconv.callbacks", "fastconv.optimizers", "fastconv.layers"):
        pytest.importorskip(mod, reason="the model/training API is not merged yet")
    out = tmp_path / "run"
    rc = main(["train", "lenet5", "--dataset", "digits", "--epochs", "2", "--limit", "600",
               "--batch-size", "32", "--lr", "0.003", "--out", str(out), "--verbose", "2"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    for name in ("best.weights.npz", "last.weights.npz", "history.json", "history.csv", "run.json"):
        assert (out / name).stat().st_size > 0, name
    run = json.loads((out / "run.json").read_text())
    hist = json.loads((out / "history.json").read_text())["history"]
    assert len(hist["loss"]) == 2 and "val_accuracy" in hist
    assert hist["loss"][1] < hist["loss"][0]
    # 10 classes: chance is 0.1; two short epochs of LeNet-5 on digits are far above it
    assert run["test_accuracy"] > 0.3, run
    assert f"test accuracy {run['test_accuracy']:.4f}" in printed
    assert len(run["epoch_seconds"]) == 2
    # evaluate reloads the best checkpoint through run.json and reproduces the test accuracy
    assert main(["evaluate", str(out / "best.weights.npz")]) == 0
    assert f"test accuracy {run['test_accuracy']:.4f}" in capsys.readouterr().out


def test_evaluate_needs_run_json(tmp_path, capsys):
    ckpt = tmp_path / "w.weights.npz"
    np.savez(ckpt, a=np.zeros(1))
    assert main(["evaluate", str(ckpt)]) == 2
    assert "run.json" in capsys.readouterr().err


def test_default_dataset_prefers_fashion_mnist_when_found(tmp_path, monkeypatch, capsys):
    from fastconv.datasets import fashion_mnist
    from fastconv.datasets.idx import write_idx
    rng = np.random.default_rng(0)
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    arrays = [rng.integers(0, 256, (8, 28, 28), dtype=np.uint8), rng.integers(0, 10, 8, dtype=np.uint8),
              rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), rng.integers(0, 10, 3, dtype=np.uint8)]
    for base, a in zip(_files.FILES, arrays):
        write_idx(d / (base + ".gz"), a)
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path))
    monkeypatch.setattr(fashion_mnist, "SPEC", _files.Spec(
        name="fashion-mnist", mirrors=(), sha256={}, shapes=((8, 28, 28), (8,), (3, 28, 28), (3,))))
    (x, y), (xt, yt), name = load_dataset(None)
    assert name == "fashion-mnist" and "digits" not in capsys.readouterr().err
    np.testing.assert_allclose(x[..., 0], arrays[0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(yt, arrays[3])


from fastconv.layers import Layer  # noqa: E402


class FakeModel(Layer):
    """Softmax regression with the Keras methods the CLI uses; shuffles from the seeded stream,
    so resuming is exact only if the CLI restores the random streams and the weights. A Layer
    with one weight, so the CLI's resume state (keyed by weight paths) covers it."""

    def __init__(self, d, k):
        super().__init__()
        self.kernel = self.add_weight("w", (d, k), initializer="zeros", dtype="float64")
        self.built = True

    @property
    def w(self):
        return self.kernel.data

    def compile(self, **kw):
        pass

    def _probs(self, x):
        z = x.reshape(len(x), -1) @ self.w
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def train_on_batch(self, x, y):
        p = self._probs(x)
        p[np.arange(len(y)), y] -= 1
        self.w[...] -= 0.5 * x.reshape(len(x), -1).T @ p / len(x)

    def fit(self, x, y, epochs, initial_epoch=0, batch_size=32, validation_data=None, **kw):
        import fastconv.random as fr
        hist = {"loss": [], "accuracy": [], "val_accuracy": []}
        for _ in range(initial_epoch, epochs):
            order = fr.generator("shuffle").permutation(len(x))
            for i in range(0, len(x), batch_size):
                self.train_on_batch(x[order[i:i + batch_size]], y[order[i:i + batch_size]])
            p = self._probs(x)
            hist["loss"].append(float(-np.log(p[np.arange(len(y)), y] + 1e-9).mean()))
            hist["accuracy"].append(float((p.argmax(1) == y).mean()))
            hist["val_accuracy"].append(float((self.predict(validation_data[0]).argmax(1)
                                               == validation_data[1]).mean()))
        return type("History", (), {"history": hist})()

    def predict(self, x, **kw):
        return self._probs(x)

    def save_weights(self, path):
        np.savez(path, w=self.w)

    def load_weights(self, path):
        self.kernel.assign(np.load(path)["w"])


def _check_resume(tmp_path, monkeypatch, capsys, epochs=3):
    from fastconv import _cli_train
    base = ["train", "lenet5", "--dataset", "digits", "--epochs", str(epochs), "--limit", "200",
            "--batch-size", "32", "--verbose", "0", "--seed", "4"]
    assert main(base + ["--out", str(tmp_path / "full")]) == 0

    real = _cli_train._fit_one_epoch
    calls = []

    def interrupted(model, x, y, epoch, total, fit_kw):
        calls.append(epoch)
        if epoch == epochs - 1:  # part-way through the last epoch: train a little, then Ctrl-C
            model.train_on_batch(x[:32], y[:32])
            raise KeyboardInterrupt
        return real(model, x, y, epoch, total, fit_kw)
    monkeypatch.setattr(_cli_train, "_fit_one_epoch", interrupted)
    assert main(base + ["--out", str(tmp_path / "cut")]) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(_cli_train, "_fit_one_epoch", real)
    assert main(base + ["--out", str(tmp_path / "cut"), "--resume"]) == 0
    assert calls == list(range(epochs))
    full = np.load(tmp_path / "full" / "last.weights.npz")
    cut = np.load(tmp_path / "cut" / "last.weights.npz")
    assert sorted(full.files) == sorted(cut.files) and full.files
    for k in full.files:
        np.testing.assert_array_equal(full[k], cut[k], err_msg=k)
    h1 = json.loads((tmp_path / "full" / "history.json").read_text())["history"]
    h2 = json.loads((tmp_path / "cut" / "history.json").read_text())["history"]
    assert h1 == h2 and len(h1["loss"]) == epochs
    return h1


def test_train_loop_resume_and_best_weights_with_a_fake_model(tmp_path, monkeypatch, capsys):
    from fastconv import _cli_train
    monkeypatch.setattr(_cli_train, "build_model", lambda name, shape, k: FakeModel(int(np.prod(shape)), k))
    monkeypatch.setattr(_cli_train, "make_optimizer", lambda name, lr: None)
    hist = _check_resume(tmp_path, monkeypatch, capsys, epochs=4)
    run = json.loads((tmp_path / "full" / "run.json").read_text())
    assert run["best_val_accuracy"] == max(hist["val_accuracy"])
    # best.weights.npz holds the weights of the best validation epoch, and test accuracy uses them
    m = FakeModel(28 * 28, 10)
    m.load_weights(tmp_path / "full" / "best.weights.npz")
    (_, _), (xt, yt), _ = load_dataset("digits", seed=4, limit=200)
    assert abs(float((m.predict(xt).argmax(1) == yt).mean()) - run["test_accuracy"]) < 1e-12
    assert run["test_accuracy"] > 0.5


def test_resume_after_interrupt_gives_same_weights(tmp_path, monkeypatch, capsys):
    for mod in ("fastconv.models", "fastconv.optimizers", "fastconv.layers", "fastconv.training"):
        pytest.importorskip(mod, reason="the model/training API is not merged yet")
    _check_resume(tmp_path, monkeypatch, capsys)


def test_directory_dataset(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for c, name in enumerate(["circle", "square"]):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(np.full((12, 10), 100 * c + i, np.uint8)).save(tmp_path / name / f"{i}.png")
    (x, y), (xt, yt), name = load_dataset(str(tmp_path), seed=1, image_size=(8, 8))
    assert x.shape == (8, 8, 8, 1) and xt.shape == (2, 8, 8, 1) and x.dtype == np.float32
    allx, ally = np.concatenate([x, xt]), np.concatenate([y, yt])
    np.testing.assert_allclose(allx[:, 0, 0, 0] * 255 // 100, ally)  # pixels agree with labels
