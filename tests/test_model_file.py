"""Whole-model files (model.save / load_model, .keras): every zoo model, Sequential,
functional and subclassed models round-trip with identical predictions and an identical next
training step (optimizer slots and step counter restored); bad files fail clearly."""
import importlib.util
import json
import zipfile

import numpy as np
import pytest

import fastconv as fc
from fastconv import callbacks, layers, models, optimizers
from fastconv.saving import register_keras_serializable


def assert_same_weights(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def roundtrip_and_step(model, x, y, path, **load_kwargs):
    """Train one step, save, load; check predictions, then one more step on both."""
    fc.set_seed(1)
    model.train_on_batch(x, y)
    model.save(path)
    loaded = models.load_model(path, **load_kwargs)
    assert type(loaded) is type(model) and loaded.name == model.name
    assert loaded.count_params() == model.count_params()
    assert_same_weights(model, loaded)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.optimizer.iterations == model.optimizer.iterations == 1
    fc.set_seed(2)  # dropout masks drawn alike in both models
    loss_a = model.train_on_batch(x, y)
    fc.set_seed(2)
    loss_b = loaded.train_on_batch(x, y)
    assert loss_b == loss_a
    assert_same_weights(model, loaded)  # bitwise: same slots, same step counter, same kernels
    return loaded


ZOO = [
    ("lenet5", dict(), (28, 28, 1)),
    ("nin", dict(classes=10), (67, 67, 3)),
    ("vgg11", dict(include_top=False, pooling="avg"), (32, 32, 3)),
    ("googlenet", dict(classes=10), (32, 32, 3)),
    ("resnet18", dict(classes=10, stem="cifar"), (16, 16, 3)),
    ("resnet20", dict(), (16, 16, 3)),
    ("small_densenet", dict(blocks=(2, 2, 2, 2)), (28, 28, 1)),
    ("mobilenet", dict(classes=10, alpha=0.25), (32, 32, 3)),
    # Tens of millions of weights (dense 4096 heads) or deep graphs: seconds each on 2 cores.
    pytest.param("alexnet", dict(classes=10), (67, 67, 3), marks=pytest.mark.slow),
    pytest.param("resnet50", dict(classes=10), (32, 32, 3), marks=pytest.mark.slow),
    pytest.param("densenet121", dict(classes=10), (32, 32, 3), marks=pytest.mark.slow),
    pytest.param("vgg16", dict(classes=10), (32, 32, 3), marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,kwargs,shape", ZOO)
def test_zoo_model_roundtrip(tmp_path, name, kwargs, shape):
    fc.set_seed(0)
    model = getattr(models, name)(input_shape=shape, **kwargs)
    model.compile(optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    x = np.random.default_rng(0).random((2,) + shape).astype(np.float32)
    y = np.array([0, 1])
    loaded = roundtrip_and_step(model, x, y, str(tmp_path / f"{name}.keras"))
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]


def test_sequential_roundtrip_keeps_compile_state(tmp_path):
    fc.set_seed(0)
    model = models.Sequential([
        layers.Input((8, 8, 1)),
        layers.Conv2D(4, 3, activation="relu", kernel_regularizer=fc.regularizers.L2(1e-3)),
        layers.BatchNormalization(), layers.MaxPooling2D(), layers.Flatten(), layers.Dropout(0.25),
        layers.Dense(3, activation="softmax")], name="seq")
    lr = optimizers.schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.5)
    model.compile(optimizers.SGD(lr, momentum=0.9, nesterov=True),
                  fc.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy", fc.metrics.SparseTopKCategoricalAccuracy(k=2)])
    x = np.random.default_rng(1).random((6, 8, 8, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    loaded = roundtrip_and_step(model, x, y, str(tmp_path / "seq.keras"))
    assert loaded.optimizer.nesterov and loaded.optimizer.learning_rate == pytest.approx(0.05 * 0.5 ** 2)
    assert loaded.metrics_names == model.metrics_names == ["loss", "accuracy", "sparse_top_k_categorical_accuracy"]
    assert loaded.layers[0].kernel_regularizer.l2 == pytest.approx(1e-3)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_functional_graph_with_shared_layers_merges_and_nested_model(tmp_path):
    fc.set_seed(0)
    a, b = layers.Input((6,), name="a"), layers.Input((6,), name="b")
    shared = layers.Dense(4, activation="tanh", name="shared")
    inner_in = layers.Input((4,))
    inner = models.Model(inner_in, layers.Dense(4, name="inner_dense")(inner_in), name="inner")
    ha, hb = shared(a), shared(b)  # one layer, two nodes
    merged = layers.Concatenate()([layers.Add()([ha, hb]), layers.Subtract()([ha, hb]), inner(ha)])
    out = layers.Dense(2, activation="softmax", name="out")(merged)
    model = models.Model([a, b], out, name="two_inputs")
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = [rng.random((5, 6)).astype(np.float32), rng.random((5, 6)).astype(np.float32)]
    y = np.array([0, 1, 1, 0, 1])
    loaded = roundtrip_and_step(model, x, y, str(tmp_path / "graph.keras"))
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert len(loaded.get_layer("shared").weights) == 2  # still shared: one set of weights


def test_frozen_base_stays_frozen_after_loading(tmp_path):
    # resnet20 creates its projection shortcuts in build(): they must come back frozen too.
    fc.set_seed(0)
    base = models.resnet20(input_shape=(16, 16, 3), include_top=False)
    base.trainable = False
    inputs = layers.Input((16, 16, 3))
    x = layers.GlobalAveragePooling2D()(base(inputs, training=False))
    model = models.Model(inputs, layers.Dense(3, activation="softmax")(x))
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    x = np.random.default_rng(3).random((4, 16, 16, 3)).astype(np.float32)
    loaded = roundtrip_and_step(model, x, np.array([0, 1, 2, 0]), str(tmp_path / "frozen.keras"))
    assert [w.name for w in loaded.trainable_weights] == [w.name for w in model.trainable_weights]
    assert len(loaded.trainable_weights) == 2
    assert len(loaded.non_trainable_weights) == len(model.non_trainable_weights) > 100


@register_keras_serializable(package="test_model_file")
class Block(models.Model):
    """A Keras model holding a list of layers, used as a block of a subclassed ResNet."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.convs = [layers.Conv2D(filters, 3, padding="same", activation="relu"),
                      layers.Conv2D(filters, 3, padding="same")]

    def call(self, x, training=None):
        y = x
        for conv in self.convs:
            y = conv(y)
        return fc.activations.relu(y + x)


@register_keras_serializable(package="test_model_file")
class TinyResNet(models.Model):
    def __init__(self, classes=3, width=4, **kwargs):
        super().__init__(**kwargs)
        self.classes, self.width = classes, width
        self.stem = layers.Conv2D(width, 3, padding="same")
        self.blocks = [Block(width), Block(width)]
        self.head = [layers.GlobalAveragePooling2D(), layers.Dense(classes, activation="softmax")]

    def call(self, x, training=None):
        x = self.stem(x)
        for block in self.blocks + self.head:
            x = block(x)
        return x

    def get_config(self):  # as Keras: a subclass states its own config
        return {**super().get_config(), "classes": self.classes, "width": self.width}


def test_subclassed_registered_model_roundtrip(tmp_path):
    fc.set_seed(0)
    model = TinyResNet(classes=3, width=4, name="tiny")
    model.compile(optimizers.RMSprop(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    x = np.random.default_rng(2).random((4, 8, 8, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    roundtrip_and_step(model, x, y, str(tmp_path / "sub.keras"))
    config = json.loads(zipfile.ZipFile(tmp_path / "sub.keras").read("config.json"))
    assert config["model"]["registered_name"] == "test_model_file>TinyResNet"


def test_unregistered_subclass_needs_custom_objects(tmp_path):
    class Plain(models.Model):
        def __init__(self, units=2, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(units)

        def call(self, x):
            return self.dense(x)
    model = Plain(3, name="plain")
    model.build((None, 5))
    path = str(tmp_path / "plain.keras")
    model.save(path)
    with pytest.raises(ValueError, match=r"unknown class 'Plain'.*register_keras_serializable.*custom_objects"):
        models.load_model(path)
    loaded = models.load_model(path, custom_objects={"Plain": Plain})
    assert loaded.optimizer is None and loaded.dense.units == 3
    x = np.ones((2, 5), np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def _small_model():
    fc.set_seed(0)
    model = models.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.train_on_batch(np.ones((2, 4), np.float32), np.array([0, 1]))
    return model


def test_to_json_and_model_from_json():
    model = _small_model()
    again = models.model_from_json(model.to_json())
    assert again.to_json() == model.to_json() and again.count_params() == model.count_params()
    with pytest.raises(ValueError, match="not a JSON string"):
        models.model_from_json("{")


def test_compile_false_and_include_optimizer_false(tmp_path):
    model = _small_model()
    path = str(tmp_path / "m.keras")
    model.save(path)
    assert models.load_model(path, compile=False).optimizer is None
    model.save(path, include_optimizer=False)
    assert not any(n.startswith("optimizer/") for n in zipfile.ZipFile(path).namelist())
    assert models.load_model(path).optimizer is None
    with pytest.raises(FileExistsError):
        model.save(path, overwrite=False)
    assert fc.saving.load_model is models.load_model


def test_wrong_extensions_are_refused(tmp_path):
    model = _small_model()
    with pytest.raises(ValueError, match=r"HDF5.*'\.keras'.*save_weights"):
        model.save(str(tmp_path / "m.h5"))
    with pytest.raises(ValueError, match=r"must end in '\.keras'"):
        model.save(str(tmp_path / "m.npz"))
    with pytest.raises(ValueError, match="HDF5"):
        models.load_model(str(tmp_path / "m.h5"))
    with pytest.raises(FileNotFoundError, match="absent.keras"):
        models.load_model(str(tmp_path / "absent.keras"))


def _write_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_corrupt_and_malicious_files_fail_clearly(tmp_path):
    model = _small_model()
    good = tmp_path / "good.keras"
    model.save(str(good))
    config = zipfile.ZipFile(good).read("config.json")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(good.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match="cannot load model file .*bad.keras"):
        models.load_model(str(bad))
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable fastconv .keras file"):
        models.load_model(str(bad))
    _write_zip(bad, {"other.json": "{}"})
    with pytest.raises(ValueError, match="config.json"):
        models.load_model(str(bad))
    _write_zip(bad, {"config.json": "{not json"})
    with pytest.raises(ValueError, match="cannot load model file"):
        models.load_model(str(bad))
    _write_zip(bad, {"config.json": json.dumps({"format": "something else"})})
    with pytest.raises(ValueError, match="not a fastconv.keras document"):
        models.load_model(str(bad))
    # A pickled array is refused, never unpickled.
    import io
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members[next(n for n in members if n.startswith("weights/"))] = buf.getvalue()
    _write_zip(bad, members)
    with pytest.raises(ValueError, match="(?i)pickle"):
        models.load_model(str(bad))
    # A class a file names that fastconv does not have: refused by name, nothing imported.
    doc = json.loads(config)
    doc["model"]["config"]["layers"][0] = {"module": "os", "class_name": "system", "config": {"command": "touch x"},
                                           "registered_name": None}
    _write_zip(bad, {"config.json": json.dumps(doc)})
    with pytest.raises(ValueError, match=r"unknown class 'system'.*register_keras_serializable"):
        models.load_model(str(bad))
    # Right format, wrong content.
    doc = json.loads(config)
    doc["compile_config"] = ["not", "a", "dict"]
    _write_zip(bad, {"config.json": json.dumps(doc)})
    with pytest.raises(ValueError, match="malformed config.json"):
        models.load_model(str(bad))
    # Weights of the wrong shape: refused before anything is assigned.
    members = dict(members)
    key = next(n for n in members if n.endswith("kernel.npy"))
    buf = io.BytesIO()
    np.save(buf, np.zeros((9, 9), np.float32))
    members[key] = buf.getvalue()
    _write_zip(bad, members)
    with pytest.raises(ValueError, match="wrongly shaped"):
        models.load_model(str(bad))


def test_lambda_with_unregistered_function_cannot_be_saved(tmp_path):
    model = models.Sequential([layers.Input((3,)), layers.Lambda(lambda t: t * 2), layers.Dense(2)])
    with pytest.raises(ValueError, match="no name to save it by"):
        model.save(str(tmp_path / "lam.keras"))
    assert not (tmp_path / "lam.keras").exists()


def test_unsavable_loss_function_is_named(tmp_path):
    def my_loss(y_true, y_pred):
        return ((y_pred - y_true) ** 2).mean()
    model = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    model.compile("sgd", my_loss)
    with pytest.raises(ValueError, match=r"loss.*'my_loss'.*register_keras_serializable"):
        model.save(str(tmp_path / "m.keras"))


def test_model_checkpoint_saves_whole_models(tmp_path):
    fc.set_seed(0)
    x = np.random.default_rng(0).random((16, 4)).astype(np.float32)
    y = (x.sum(axis=1) > 2).astype(np.int64)
    model = models.Sequential([layers.Input((4,)), layers.Dense(2, activation="softmax")])
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    pattern = str(tmp_path / "m-{epoch:02d}.keras")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callbacks.ModelCheckpoint(pattern)])
    last = models.load_model(str(tmp_path / "m-02.keras"))
    assert last.optimizer.iterations == model.optimizer.iterations == 4
    assert_same_weights(model, last)
    h5 = [".weights.h5"] if importlib.util.find_spec("h5py") else []  # Keras's layout needs h5py
    for weights_only, ext in [(True, ".npz"), (False, ".npz")] + [(w, e) for e in h5 for w in (True, False)]:
        # a weights name (.npz, .weights.h5) gets the weights it names in both modes
        weights = tmp_path / f"w-{weights_only}{ext}"
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callbacks.ModelCheckpoint(str(weights), save_weights_only=weights_only)])
        fresh = models.Sequential([layers.Input((4,)), layers.Dense(2, activation="softmax")])
        fresh.load_weights(str(weights))
        assert_same_weights(fresh, model)


@pytest.mark.parametrize("path,weights_only,accepted", [
    ("m.h5", False, ".keras"), ("m.hdf5", False, ".keras"), ("m.txt", False, ".keras"),
    ("m.keras", True, ".npz"), ("w.pkl", True, ".npz")])
def test_model_checkpoint_refuses_extensions_at_construction(path, weights_only, accepted):
    with pytest.raises(ValueError, match=rf"filepath '{path}'.*{accepted}"):
        callbacks.ModelCheckpoint(path, save_weights_only=weights_only)


def test_cuda_backend_files_load_anywhere(tmp_path, monkeypatch):
    """Saved on the cuda backend (the CPU emulation of tests/cuda_emulation.py): loads on the
    cpu backend with the same predictions, and on cuda continues with the same next step."""
    import cuda_emulation
    before = fc.get_backend()
    cuda_emulation.install(monkeypatch)
    try:
        x = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
        y = np.array([0, 1, 2, 0])
        with fc.backend("cuda"):
            fc.set_seed(0)
            model = models.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu"),
                                       layers.BatchNormalization(), layers.GlobalAveragePooling2D(),
                                       layers.Dense(3, activation="softmax")])
            model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy")
            roundtrip_and_step(model, x, y, str(tmp_path / "gpu.keras"))
            model.save(str(tmp_path / "gpu.keras"))
            want = model.predict(x, verbose=0)
        with fc.backend("cpu"):
            on_cpu = models.load_model(str(tmp_path / "gpu.keras"))
            np.testing.assert_allclose(on_cpu.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
            assert on_cpu.optimizer.iterations == 2
    finally:
        fc.set_backend(before)


def test_committed_file_still_loads_and_continues(tmp_path):
    """tests/golden/model_file_v1.keras, written by tests/golden/make_model_file.py: its
    predictions and next training step were computed on the NumPy reference backend; here the
    cpu kernels must reproduce them from the committed file (float32 rounding apart)."""
    import os
    golden = os.path.join(os.path.dirname(__file__), "golden")
    with np.load(os.path.join(golden, "model_file_v1.npz"), allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    model = models.load_model(os.path.join(golden, "model_file_v1.keras"))
    assert model.name == "golden_v1" and model.optimizer.iterations == 2
    assert [l.name for l in model.layers] == ["image", "conv", "bn", "relu", "shortcut", "residual", "gap",
                                              "dropout", "probs"]
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["predictions"], rtol=1e-5, atol=1e-6)
    fc.set_seed(3)
    model.train_on_batch(data["x"], data["y"])
    after = model.get_weights()
    assert len(after) == sum(k.startswith("after/") for k in data)
    for i, w in enumerate(after):
        np.testing.assert_allclose(w, data[f"after/{i}"], rtol=1e-4, atol=1e-5, err_msg=f"weight {i}")
