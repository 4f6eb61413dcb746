"""Weight files and atomic writes: an interrupted save keeps the previous file, and a bad file
never leaves a model half-loaded."""
import json
import os
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv import layers, models
from fastconv_subprocess import run_python


def _model(seed):
    fastconv.set_seed(seed)
    return models.Sequential([layers.Dense(16, activation="relu", input_shape=(32,)),
                              layers.BatchNormalization(), layers.Dense(4)])


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- load_weights
@pytest.mark.parametrize("bad", [np.full((16, 4), "oops"), np.ones((16, 4), np.complex64)],
                         ids=["strings", "complex"])
def test_load_weights_checks_every_array_before_assigning(tmp_path, bad):
    model = _model(0)
    before = _weights(model)
    model.save_weights(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as f:  # in the model's order
        arrays = {k: f[k] + 1 for k in f.files}  # right keys and shapes, every value different
    last = [k for k in arrays if arrays[k].shape == (16, 4)][-1]
    arrays[last] = bad  # ... and one late array that cannot become float32
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=last):
        model.load_weights(tmp_path / "bad.npz")
    _assert_same(_weights(model), before)  # nothing was assigned


def _npy_bytes():
    import io
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    return buf.getvalue()


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04truncated", _npy_bytes()],
                         ids=["empty", "text", "truncated zip", "lone .npy"])
def test_load_weights_of_a_corrupt_file_is_a_value_error_naming_it(tmp_path, content):
    model = _model(0)
    before = _weights(model)
    path = tmp_path / "corrupt.weights.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="corrupt.weights.npz"):
        model.load_weights(path)
    _assert_same(_weights(model), before)


# ----------------------------------------------------------------------------- atomic writes
def test_keyboard_interrupt_during_save_weights_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.weights.npz"
    _model(0).save_weights(path)
    good = path.read_bytes()

    def half_then_ctrl_c(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", half_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        _model(1).save_weights(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.weights.npz"]  # no temporary file left


def test_atomic_write_replaces_only_on_success(tmp_path):
    from fastconv.saving import atomic_write
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as f:
            f.write("new, but never finished")
            raise RuntimeError("failed half-way")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]
    with atomic_write(path, "w") as f:
        f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["a.txt"]
    # permissions follow the umask as for open(), not a temporary file's 0600
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


# Every writer fastconv has, each saving over a good file with the file size limited so that
# the write fails part-way (SIGXFSZ ignored: the write raises OSError instead of killing).
WRITERS = textwrap.dedent("""
    import os, resource, signal, sys
    import numpy as np
    import fastconv
    from fastconv import callbacks, layers, models, viz
    from fastconv._cli_train import _history_files
    from fastconv.datasets.idx import write_idx

    folder = sys.argv[1]
    fastconv.set_seed(1)
    model = models.Sequential([layers.Dense(16, activation="relu", input_shape=(32,)),
                               layers.BatchNormalization(), layers.Dense(4)])
    history = {"loss": [float(i) for i in range(300)], "val_loss": [float(i) for i in range(300)]}
    logger = callbacks.CSVLogger(os.path.join(folder, "log.csv"), append=True)
    viz.plot_history({"loss": [1.0, 0.5]}, os.path.join(folder, "warm-up.png"))  # font caches etc.
    os.remove(os.path.join(folder, "warm-up.png"))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
    writers = {
        "weights": lambda: model.save_weights(os.path.join(folder, "m.weights.npz")),
        "plot": lambda: viz.plot_history(history, os.path.join(folder, "curves.png")),
        "idx": lambda: write_idx(os.path.join(folder, "x-idx3-ubyte"),
                                 np.random.default_rng(0).integers(0, 255, (10, 20, 20), dtype=np.uint8)),
        "csv": lambda: (logger.on_train_begin(), logger.on_epoch_end(0, {"loss": 0.5})),
        "history": lambda: _history_files(folder, history, [1.0] * 300),
    }
    for name, write in writers.items():
        try:
            write()
        except OSError:
            print(name, "failed")
        else:
            print(name, "succeeded")
""")


def test_writes_that_fail_half_way_keep_the_previous_files(tmp_path):
    old = {"m.weights.npz": None, "curves.png": b"\x89PNG old picture", "x-idx3-ubyte": b"old idx",
           "log.csv": b"epoch,loss\n" + b"".join(b"%d,0.25\n" % i for i in range(300)),
           "history.json": b'{"history": {}}', "history.csv": b"epoch\n"}
    _model(0).save_weights(tmp_path / "m.weights.npz")
    for name, content in old.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        old[name] = (tmp_path / name).read_bytes()
    r = run_python(["-c", WRITERS, str(tmp_path)], env={"MPLBACKEND": "Agg"}, capture_output=True,
                   text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["weights", "failed", "plot", "failed", "idx", "failed", "csv",
                                "failed", "history", "failed"], r.stdout
    for name, content in old.items():
        assert (tmp_path / name).read_bytes() == content, name
    assert sorted(os.listdir(tmp_path)) == sorted(old)  # no temporary files left behind
    model = _model(2)
    model.load_weights(tmp_path / "m.weights.npz")
    _assert_same(_weights(model), _weights(_model(0)))
    json.loads((tmp_path / "history.json").read_text())


def test_no_pickle_anywhere_in_fastconv():
    root = os.path.dirname(fastconv.__file__)
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name)).read()
                assert "import pickle" not in text and "allow_pickle=True" not in text, name
                assert "pickle.load" not in text, name


def test_every_file_is_written_through_atomic_write():
    # A guard for new code: writing a file any other way could leave half a file behind.
    import re
    direct = re.compile(r"""open(er)?\(.*["'][wax][bt]?["']|os\.replace|mkstemp|\.tofile\(|np\.save\(|"""
                        r"""savefig\((?!f,)|np\.savez\((?!f,)""")
    root = os.path.dirname(fastconv.__file__)
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and not path.endswith(os.path.join("saving", "atomic.py")):
                for i, line in enumerate(open(path), 1):
                    code = line.split("#")[0]
                    if direct.search(code) and "zf.open(" not in code and "os.devnull" not in code:
                        # (members of an atomic zip and the null device are not files left behind)
                        found.append(f"{os.path.relpath(path, root)}:{i}: {line.strip()}")
    assert not found, "\n".join(found)
