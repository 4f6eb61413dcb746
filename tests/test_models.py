"""Models: the three construction styles, parameter counting (shared, frozen, nested),
summary text, weights I/O, functional graphs, input checks and training-mode propagation."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import layers, models
from fastconv.autograd import Tensor

UNITS = (520, 320, 240, 120)


@pytest.fixture(autouse=True)
def _numpy(numpy_backend):
    fc.set_seed(0)
    yield


def mlp_sequential():
    return models.Sequential([layers.Dense(UNITS[0], activation="relu", input_shape=(784,))]
                             + [layers.Dense(u, activation="relu") for u in UNITS[1:]] + [layers.Dense(10)])


def mlp_functional():
    x = h = layers.Input((784,))
    for u in UNITS:
        h = layers.Dense(u, activation="relu")(h)
    return models.Model(x, layers.Dense(10)(h), name="mlp_functional")


class MLP(models.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = [layers.Dense(u, activation="relu") for u in UNITS]
        self.head = layers.Dense(10)

    def call(self, x, training=None):
        for layer in self.hidden:
            x = layer(x)
        return self.head(x)


def test_mlp_in_three_styles_has_682090_params():
    sub = MLP()
    sub.build((None, 784))
    for model in (mlp_sequential(), mlp_functional(), sub):
        assert model.count_params() == 682_090
        assert len(model.trainable_weights) == 10 and model.non_trainable_weights == []
        lines = _summary(model).splitlines()
        assert " Total params: 682,090 (2.60 MB)" in lines
        assert " Trainable params: 682,090 (2.60 MB)" in lines
        assert " Non-trainable params: 0 (0.00 B)" in lines


def test_three_styles_compute_the_same_function(rng):
    seq, fun, sub = mlp_sequential(), mlp_functional(), MLP()
    sub.build((None, 784))
    fun.set_weights(seq.get_weights())
    sub.set_weights(seq.get_weights())
    x = rng.standard_normal((3, 784)).astype(np.float32)
    h = x
    ws = seq.get_weights()
    for i in range(0, 8, 2):
        h = np.maximum(h @ ws[i] + ws[i + 1], 0)
    expect = h @ ws[8] + ws[9]
    for m in (seq, fun, sub):
        np.testing.assert_allclose(m(x).numpy(), expect, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(seq(Tensor(x)).numpy(), expect, rtol=1e-4, atol=1e-4)  # Tensors too


def _summary(model):
    out = []
    model.summary(print_fn=out.append)
    return "\n".join(out)


def test_summary_table_and_batchnorm_counts():
    model = models.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(64, 3, padding="same"),
                               layers.BatchNormalization(), layers.GlobalAveragePooling2D(), layers.Dense(10)])
    text = _summary(model)
    conv, bn, dense = 3 * 3 * 3 * 64 + 64, 256, 64 * 10 + 10
    assert 'Model: "sequential' in text and "Layer (type)" in text and "Output Shape" in text
    assert "(None, 8, 8, 64)" in text and "(None, 64)" in text and "(None, 10)" in text
    assert "(Conv2D)" in text and "1,792" in text and "(BatchNormalization)" in text
    total = conv + bn + dense
    assert f" Total params: {total:,} ({total * 4 / 1024:.2f} KB)" in text
    assert f" Trainable params: {total - 128:,} ({(total - 128) * 4 / 1024:.2f} KB)" in text
    assert " Non-trainable params: 128 (512.00 B)" in text


def test_trainable_false_moves_counts_and_is_recursive():
    inner = models.Sequential([layers.Dense(4, input_shape=(3,)), layers.BatchNormalization()], name="inner")
    outer = models.Sequential([inner, layers.Dense(2)])
    outer.build((None, 3))
    assert outer.count_params() == 16 + 16 + 10
    assert sum(w.size for w in outer.non_trainable_weights) == 8
    inner.trainable = False
    assert all(not layer.trainable for layer in inner.layers)
    assert sum(w.size for w in outer.trainable_weights) == 10
    assert sum(w.size for w in outer.non_trainable_weights) == 32
    assert " Non-trainable params: 32 (128.00 B)" in _summary(outer)
    inner.trainable = True
    assert sum(w.size for w in outer.trainable_weights) == 34  # moving stats stay non-trainable


def test_shared_layer_counted_once(rng):
    shared = layers.Dense(5)
    a, b = layers.Input((5,)), layers.Input((5,))
    model = models.Model([a, b], layers.add([shared(a), shared(shared(b))]))
    assert model.count_params() == 30 and len(model.weights) == 2
    assert " Total params: 30 (120.00 B)" in _summary(model)
    xa, xb = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    w, bias = (v.numpy() for v in shared.weights)
    expect = xa @ w + bias + (xb @ w + bias) @ w + bias
    np.testing.assert_allclose(model([xa, xb]).numpy(), expect, rtol=1e-4, atol=1e-5)


def test_residual_graph_reusing_a_tensor(rng):
    x = layers.Input((6, 6, 4))
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    h = layers.Conv2D(4, 3, padding="same", name="c2")(h)
    y = layers.ReLU()(layers.add([h, x]))          # x feeds both c1 and the add
    y = layers.concatenate([y, x])                 # ... and the concatenation
    model = models.Model(x, layers.GlobalAveragePooling2D()(y))
    assert model.output_shape == (None, 8)
    assert [l.name for l in model.layers[:3]][1:] == ["c1", "c2"]
    data = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    c1, c2 = model.get_layer("c1"), model.get_layer("c2")
    ref = fc.functional
    h1 = np.maximum(ref.conv2d(data, c1.kernel.numpy(), c1.bias.numpy(), padding="same"), 0)
    h2 = ref.conv2d(h1, c2.kernel.numpy(), c2.bias.numpy(), padding="same")
    expect = np.concatenate([np.maximum(h2 + data, 0), data], -1).mean((1, 2))
    np.testing.assert_allclose(model(data).numpy(), expect, rtol=1e-5, atol=1e-6)
    assert "Connected to" in _summary(model)


def test_unbuilt_subclassed_summary_shows_unbuilt_layers_as_keras3():
    # Keras 3 prints an unbuilt model's table ("?" shapes, "0 (unbuilt)" counts, 0 totals);
    # count_params() is what asks to build first.
    text = _summary(MLP())
    assert "0 (unbuilt)" in text and " Total params: 0 (0.00 B)" in text
    with pytest.raises(ValueError, match="build"):
        MLP().count_params()


def test_wrong_input_shape_names_both_shapes():
    for model in (mlp_sequential(), mlp_functional()):
        with pytest.raises(ValueError, match=r"\(None, 784\).*\(2, 783\)"):
            model(np.zeros((2, 783), np.float32))
    cnn = models.Sequential([layers.Conv2D(2, 3, input_shape=(8, 8, 1)), layers.Flatten(), layers.Dense(3)])
    with pytest.raises(ValueError, match=r"\(None, 8, 8, 1\).*\(2, 9, 9, 1\)"):
        cnn(np.zeros((2, 9, 9, 1), np.float32))


def test_sequential_builds_lazily_add_pop_and_nesting():
    m = models.Sequential()
    m.add(layers.Dense(4))
    m.add(layers.Dense(2))
    assert not m.built
    y = m(np.ones((3, 5), np.float32))
    assert y.shape == (3, 2) and m.built and m.count_params() == 24 + 10
    popped = m.pop()
    assert isinstance(popped, layers.Dense) and len(m.layers) == 1
    x = layers.Input((5,))
    outer = models.Model(x, layers.Dense(1)(m(x)))
    assert outer.count_params() == 24 + 5 and outer.output_shape == (None, 1)


def test_subclassed_tracks_lists_dicts_and_nested_models_and_training_flag():
    class Net(models.Model):
        def __init__(self):
            super().__init__()
            self.blocks = []
            self.blocks.append(layers.Dense(3))   # appended after assignment, still tracked
            self.extra = {"drop": layers.Dropout(0.5)}
            self.body = mlp_sequential()

        def call(self, x, training=None):
            return self.extra["drop"](self.blocks[0](self.body(x)))

    net = Net()
    net.build((None, 784))
    assert net.count_params() == 682_090 + 33
    x = np.ones((4, 784), np.float32)
    np.testing.assert_array_equal(net(x).numpy(), net(x).numpy())  # inference: no dropout
    fc.set_seed(1)
    dropped = net(x, training=True).numpy()     # training reaches the nested Dropout
    assert (dropped == 0).any()


def test_subclassed_model_inside_a_functional_graph(rng):
    sub = MLP()
    x = layers.Input((784,))
    y = layers.Softmax()(sub(x))       # output shape by a dry run of the subclassed call
    model = models.Model(x, y)
    assert y.shape == (None, 10) and model.count_params() == 682_090
    out = model(rng.standard_normal((2, 784)).astype(np.float32)).numpy()
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)


def test_get_set_weights_round_trip_and_errors():
    a, b = mlp_sequential(), mlp_sequential()
    b.set_weights(a.get_weights())
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    with pytest.raises(ValueError, match=r"\(784, 520\).*\(3, 3\)"):
        b.set_weights([np.zeros((3, 3))] + a.get_weights()[1:])
    with pytest.raises(ValueError, match="9"):
        b.set_weights(a.get_weights()[:9])


def cnn():
    return models.Sequential([layers.Conv2D(4, 3, padding="same", input_shape=(8, 8, 1)),
                              layers.BatchNormalization(), layers.ReLU(), layers.MaxPooling2D(2),
                              layers.Conv2D(6, 3, activation="relu"), layers.Flatten(), layers.Dense(3)])


def test_save_load_round_trip_includes_moving_stats(tmp_path, rng):
    a = cnn()
    a(rng.standard_normal((8, 8, 8, 1)), training=True)   # moves BN statistics off their init
    path = tmp_path / "w.weights.npz"
    a.save_weights(path)
    keys = set(np.load(path).files)
    assert {"model/conv2d/kernel", "model/conv2d_1/bias", "model/batch_normalization/moving_mean",
            "model/batch_normalization/moving_variance", "model/dense/kernel"} <= keys
    b = cnn()                                             # other auto names, same architecture
    b.load_weights(path)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    x = rng.standard_normal((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_strict_load_lists_missing_unexpected_and_wrong_shapes(tmp_path):
    path = tmp_path / "w.npz"
    cnn().save_weights(path)
    other = models.Sequential([layers.Conv2D(5, 3, padding="same", input_shape=(8, 8, 1)),
                               layers.Flatten(), layers.Dense(3)])
    with pytest.raises(ValueError) as err:
        other.load_weights(path)
    msg = str(err.value)
    assert "missing" in msg and "unexpected" in msg and "wrongly shaped" in msg
    assert "model/batch_normalization/gamma" in msg                # unexpected
    assert "model/conv2d/kernel (file (3, 3, 1, 4), model (3, 3, 1, 5))" in msg
    before = other.get_weights()
    status = other.load_weights(path, strict=False)
    assert "model/conv2d/kernel" in [k for k, _, _ in status.mismatched]
    np.testing.assert_array_equal(other.get_weights()[0], before[0])  # mismatched left alone
    with pytest.raises(ValueError, match="build"):
        MLP().load_weights(path)


# -- regularisation, compile and steps ----------------------------------------------------
def test_layer_losses_collect_regularizer_penalties():
    from fastconv import regularizers
    d = layers.Dense(3, kernel_regularizer=regularizers.L2(0.1), bias_regularizer="l1",
                     bias_initializer="ones")
    m = models.Sequential([layers.Input((4,)), d, layers.Dense(2, kernel_regularizer=regularizers.L1(0.5))])
    got = sorted(float(p.numpy()) for p in m.losses)
    k0, k1 = d.kernel.numpy(), m.layers[1].kernel.numpy()
    expect = sorted([0.1 * float((k0 ** 2).sum()), 0.01 * 3.0, 0.5 * float(np.abs(k1).sum())])
    np.testing.assert_allclose(got, expect, rtol=1e-6)
    d.trainable = False
    assert len(m.losses) == 1  # frozen weights are not penalised (Keras 3)


def test_train_step_is_one_sgd_step_on_mse_plus_l2(rng):
    from fastconv import optimizers, regularizers
    x = rng.standard_normal((6, 4)).astype(np.float32)
    y = rng.standard_normal((6, 2)).astype(np.float32)
    d = layers.Dense(2, kernel_regularizer=regularizers.L2(0.1), dtype="float32")
    model = models.Sequential([layers.Input((4,)), d])
    model.compile(optimizers.SGD(0.1), "mse")
    w, b = d.kernel.numpy().copy(), d.bias.numpy().copy()
    pred = x @ w + b
    loss = ((pred - y) ** 2).mean() + 0.1 * (w ** 2).sum()
    g = 2 * (pred - y) / pred.size
    logs = model.train_step(x, y)
    assert logs["loss"] == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(d.kernel.numpy(), w - 0.1 * (x.T @ g + 0.2 * w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d.bias.numpy(), b - 0.1 * g.sum(0), rtol=1e-5, atol=1e-6)
    # running mean over steps until reset_metrics(), as Keras reports within an epoch
    mixed = model.test_step(x, y)["loss"]
    model.reset_metrics()
    after = model.test_step(x, y)["loss"]
    assert mixed == pytest.approx((loss + after) / 2, rel=1e-5)
    assert model.train_on_batch(x, y) == pytest.approx(after, rel=1e-5)  # resets: this batch only


def test_train_step_skips_frozen_layers_and_updates_bn_stats_only_in_training(rng):
    x = rng.standard_normal((8, 3)).astype(np.float32) + 2
    y = rng.integers(0, 2, 8)
    model = models.Sequential([layers.Input((3,)), layers.Dense(4, name="frozen"),
                               layers.BatchNormalization(), layers.Dense(2)])
    model.get_layer("frozen").trainable = False
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    frozen = model.get_layer("frozen").get_weights()
    bn = model.layers[1]
    logs = model.test_step(x, y)
    assert set(logs) == {"loss", "accuracy"}
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 0)   # inference: stats untouched
    model.train_step(x, y)
    assert np.abs(bn.moving_mean.numpy()).max() > 0
    for a, b in zip(frozen, model.get_layer("frozen").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.predict_step(x).shape == (8, 2)


def test_numpy_and_cpu_backends_agree_on_a_cnn(rng):
    fc.set_seed(4)
    model = models.Sequential([layers.Input((9, 9, 3)), layers.Conv2D(4, 3, strides=2, padding="same"),
                               layers.BatchNormalization(), layers.ReLU(), layers.DepthwiseConv2D(3, padding="same"),
                               layers.SeparableConv2D(5, 2, activation="tanh"), layers.AveragePooling2D(2),
                               layers.GlobalMaxPooling2D(), layers.Dense(3, activation="softmax")])
    x = rng.standard_normal((2, 9, 9, 3)).astype(np.float32)
    want = model(x, training=True).numpy()        # numpy backend (fixture); moves BN stats
    with fc.backend("cpu"):
        got = model(x).numpy()
    np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert want.shape == got.shape == (2, 3)
