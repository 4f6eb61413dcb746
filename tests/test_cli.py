"""The ``fastconv`` command line: info, data set selection, and a real short training run."""
import json
import os

import numpy as np
import pytest

from fastconv.__main__ import load_dataset, main, split_validation
from fastconv.datasets import _files
from fastconv_subprocess import run_python


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
    r = run_python(["-m", "fastconv", "--help"], capture_output=True, text=True, timeout=60,
                   cwd=tmp_path)
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


# ----------------------------------------------------------------------------- resume state
QUICK = ["train", "lenet5", "--dataset", "digits", "--limit", "100", "--batch-size", "32",
         "--verbose", "0", "--seed", "1"]


def _one_error_line(capsys, command="train"):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fastconv {command}: error: "), err
    return err[0]


def test_resume_state_is_data_only(tmp_path, capsys):
    import zipfile
    out = tmp_path / "run"
    assert main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    assert not (out / "resume.pkl").exists()
    with zipfile.ZipFile(out / "resume.npz") as zf:
        state = json.loads(zf.read("state.json"))
    assert state["epoch"] == 1 and state["arguments"]["model"] == "lenet5"
    assert set(state["random"]["streams"]) and isinstance(state["threads"], int)
    with np.load(out / "resume.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != "state.json"}
    assert "weights/model/conv2d/kernel" in arrays
    assert "optimizer/model/conv2d/kernel/m" in arrays and int(arrays["optimizer/iterations"]) == 3
    assert not any(a.dtype == object for a in arrays.values())


class _Payload:
    """Unpickling this creates a file: proof that loading the state ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_never_unpickles_an_old_state(tmp_path, capsys):
    import pickle
    out, marker = tmp_path / "run", tmp_path / "code-ran"
    out.mkdir()
    (out / "resume.pkl").write_bytes(pickle.dumps({"model": _Payload(str(marker))}))
    assert main(QUICK + ["--epochs", "1", "--out", str(out), "--resume"]) == 2
    assert "resume.pkl" in _one_error_line(capsys)
    assert not marker.exists() and sorted(os.listdir(out)) == ["resume.pkl"]


def _rewrite_zip(path, drop):
    import zipfile
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            if not drop(n):
                zf.writestr(n, data)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "no state.json", "no optimizer slots",
                                    "missing weight", "bad json", "short history"])
def test_corrupt_or_incomplete_resume_state_is_one_line_error(tmp_path, capsys, damage):
    out = tmp_path / "run"
    assert main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    state = out / "resume.npz"
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif damage == "garbage":
        state.write_bytes(b"\x80\x04not an archive")
    elif damage == "no state.json":
        _rewrite_zip(state, lambda n: n == "state.json")
    elif damage == "no optimizer slots":
        _rewrite_zip(state, lambda n: n.startswith("optimizer/") and n.endswith("/m.npy"))
    elif damage == "missing weight":
        _rewrite_zip(state, lambda n: n == "weights/model/dense/bias.npy")
    else:
        import zipfile
        with zipfile.ZipFile(state) as zf:
            doc = json.loads(zf.read("state.json"))
        doc["history"]["loss"] = []
        _rewrite_zip(state, lambda n: n == "state.json")
        with zipfile.ZipFile(state, "a") as zf:
            zf.writestr("state.json", "{not json" if damage == "bad json" else json.dumps(doc))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(QUICK + ["--epochs", "2", "--out", str(out), "--resume"]) == 2
    _one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written


def test_resume_refuses_different_arguments_and_names_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    run_json = (out / "run.json").read_bytes()
    changed = [a if a != "32" else "16" for a in QUICK]  # --batch-size 16
    capsys.readouterr()
    assert main(changed + ["--epochs", "2", "--lr", "0.01", "--out", str(out), "--resume"]) == 2
    line = _one_error_line(capsys)
    assert "--batch-size 32 (now 16)" in line and "--lr None (now 0.01)" in line
    assert (out / "run.json").read_bytes() == run_json
    # --epochs (to extend the run) and --verbose may change
    assert main(QUICK[:-4] + ["--verbose", "2", "--seed", "1", "--epochs", "2", "--out", str(out),
                              "--resume"]) == 0
    assert json.loads((out / "run.json").read_text())["epochs"] == 2
    with pytest.raises(SystemExit):  # and --help says so
        main(["train", "--help"])
    assert "except --epochs (to extend it) and --verbose" in " ".join(capsys.readouterr().out.split())


def test_resume_with_another_thread_count_warns(tmp_path, capsys):
    import fastconv
    out = tmp_path / "run"
    n = fastconv.get_num_threads()
    assert main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    fastconv.set_num_threads(n + 1)
    try:
        assert main(QUICK + ["--epochs", "2", "--out", str(out), "--resume"]) == 0
    finally:
        fastconv.set_num_threads(n)
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "thread" in ln]
    assert len(warnings) == 1 and f"{n} threads" in warnings[0] and "bit for bit" in warnings[0]


# ----------------------------------------------------------------------------- errors, not tracebacks
BAD_COMMANDS = {  # id: (arguments, what the error line must say)
    "epochs 0": (["train", "lenet5", "--dataset", "digits", "--epochs", "0"], "--epochs"),
    "limit 0": (["train", "lenet5", "--dataset", "digits", "--limit", "0"], "--limit"),
    "limit -5": (["train", "lenet5", "--dataset", "digits", "--limit", "-5"], "--limit"),
    "batch-size 0": (["train", "lenet5", "--dataset", "digits", "--batch-size", "0"], "--batch-size"),
    "unknown model": (["train", "no_such_model", "--dataset", "digits"], "unknown model"),
    "unknown optimizer": (["train", "lenet5", "--dataset", "digits", "--optimizer", "nope"], "--optimizer"),
    "nothing to train on": (["train", "lenet5", "--dataset", "digits", "--limit", "2", "--val-split", "0.9"],
                            "no training images"),
    "out is a file": (["train", "lenet5", "--dataset", "digits", "--out", "a-file"], "a-file is a file"),
    "out below a file": (["train", "lenet5", "--dataset", "digits", "--out", "a-file/below"], "a-file is a file"),
    "huge input shape": (["summary", "lenet5", "--input-shape", "1000000", "1000000", "1"], "memory"),
    "zero input shape": (["summary", "lenet5", "--input-shape", "0", "28", "1"], "--input-shape"),
    "summary unknown model": (["summary", "no_such_model"], "unknown model"),
    "corrupt checkpoint": (["evaluate", "run/corrupt.weights.npz"], "corrupt.weights.npz"),
    "incomplete checkpoint": (["evaluate", "run/short.weights.npz"], "missing keys"),
    "corrupt run.json": (["evaluate", "bad-run/w.weights.npz"], "run.json"),
}


@pytest.mark.parametrize("argv, says", BAD_COMMANDS.values(), ids=BAD_COMMANDS)
def test_bad_arguments_and_files_end_with_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, argv, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("keep me")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps(
        {"model": "lenet5", "dataset": "digits", "limit": 20, "classes": 10}))
    (tmp_path / "run" / "corrupt.weights.npz").write_bytes(b"PK\x03\x04 not really")
    np.savez(tmp_path / "run" / "short.weights.npz", **{"model/conv2d/kernel": np.zeros((5, 5, 1, 6))})
    (tmp_path / "bad-run").mkdir()
    (tmp_path / "bad-run" / "run.json").write_text("{")
    (tmp_path / "bad-run" / "w.weights.npz").write_bytes(b"")

    def snapshot():
        return {str(p.relative_to(tmp_path)): p.read_bytes() if p.is_file() else None
                for p in tmp_path.rglob("*")}
    before = snapshot()
    assert main(argv) == 2
    assert says in _one_error_line(capsys, argv[0])
    assert snapshot() == before  # no folder, no file, nothing overwritten
