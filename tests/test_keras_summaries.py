"""model.summary() against the real Keras 3 summaries of the course models.

tests/golden/keras_summaries/*.txt were printed by Keras 3.15.1 (TensorFlow backend) from the
very builders in tests/keras_course_models.py (make_summaries.py there regenerates them).
Nothing is normalised: the comparison is line for line, box characters and padding included.
Both sides run with COLUMNS=200 so neither narrows the table to a terminal (Keras's default
width is min(88, terminal - 4), 108 with the Connected to column).
"""
import os

import numpy as np
import pytest

import fastconv as keras
from fastconv.layers import clear_session

import keras_course_models as course

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "keras_summaries")


def _keras_summary(name):
    with open(os.path.join(GOLDEN, f"{name}.txt"), encoding="utf-8") as f:
        header, text = f.read().split("\n", 1)
    assert header.startswith("# keras 3.")
    return text


def _our_summary(model, **kwargs):
    printed = []
    model.summary(print_fn=printed.append, **kwargs)
    assert len(printed) == 1  # Keras 3 hands print_fn the whole table at once
    return printed[0]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.parametrize("name", sorted(course.SUMMARY_CASES))
def test_summary_matches_keras3(name):
    clear_session()  # layer names restart at dense, dense_1, ... as in a fresh Keras script
    keras.set_seed(0)
    model = course.SUMMARY_CASES[name](keras)
    assert _our_summary(model).splitlines() == _keras_summary(name).splitlines()


@pytest.mark.parametrize("name", sorted(course.SUMMARY_OPTIONS))
def test_summary_options_match_keras3(name):
    """show_trainable, expand_nested, layer_range, line_length, positions."""
    case, options = course.SUMMARY_OPTIONS[name]
    clear_session()
    keras.set_seed(0)
    model = course.SUMMARY_CASES[case](keras)
    assert _our_summary(model, **options).splitlines() == _keras_summary(name).splitlines()


def test_bad_summary_options_are_clear_errors():
    clear_session()
    model = course.resnet_block_functional(keras)
    with pytest.raises(ValueError, match="does not match the model's layer names"):
        model.summary(layer_range=["nothing_like_this", "add"])
    with pytest.raises(ValueError, match="two layer names"):
        model.summary(layer_range=["conv2d"])
    with pytest.raises(ValueError, match="positions must give 4 column ends"):
        model.summary(positions=[0.5, 1.0])
    with pytest.raises(TypeError):
        model.summary(no_such_option=True)  # no longer swallowed silently


def test_summary_prints_once_without_a_trailing_blank_line(capsys):
    clear_session()
    course.mlp_sequential(keras).summary()
    out = capsys.readouterr().out
    assert out.splitlines() == _keras_summary("mlp_sequential").splitlines()
    assert out.endswith("┘\n Total params: 535,818 (2.04 MB)\n Trainable params: 535,818 (2.04 MB)\n"
                        " Non-trainable params: 0 (0.00 B)\n")


def test_default_width_follows_the_terminal(monkeypatch):
    clear_session()
    model = course.mlp_sequential(keras)
    monkeypatch.setenv("COLUMNS", "70")  # Keras: min(88, 70 - 4) = 66 characters
    widths = {len(line) for line in _our_summary(model).splitlines()[1:-3]}
    assert widths == {66}
    assert {len(line) for line in _our_summary(model, line_length=100).splitlines()[1:-3]} == {100}


def test_too_narrow_a_line_is_a_clear_error():
    clear_session()
    with pytest.raises(ValueError, match="line_length=8"):
        _our_summary(course.mlp_sequential(keras), line_length=8)


def test_optimizer_line_counts_sgd_momentum_slots():
    # Keras 3.15 prints, for this model and optimizer: one momentum per weight (Dense(4->3): 15)
    # plus iterations (int64) and the learning rate (float32) = 17 params, 72 bytes.
    clear_session()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    assert "Optimizer params" not in _our_summary(model)  # not built before the first step
    rng = np.random.default_rng(0)
    model.fit(rng.random((4, 4), dtype=np.float32), rng.random((4, 3), dtype=np.float32), verbose=0)
    lines = _our_summary(model).splitlines()
    assert lines[-1] == " Optimizer params: 17 (72.00 B)"  # 15*4 + 8 + 4 bytes
    assert lines[-4] == " Total params: 32 (132.00 B)"


def test_subclassed_model_built_by_build_shows_batch_none():
    # The one deliberate difference: Keras 3 leaves a subclass without build() unbuilt after
    # model.build(shape) ("?" and "0 (unbuilt)"); fastconv builds it by a dry run, and prints
    # the golden's counts with batch None rather than the dry run's batch of 1.
    clear_session()

    class MLP(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden1 = keras.layers.Dense(512, activation="relu")
            self.dropout = keras.layers.Dropout(0.2)
            self.hidden2 = keras.layers.Dense(256, activation="relu")
            self.classifier = keras.layers.Dense(10, activation="softmax")

        def call(self, x, training=False):
            return self.classifier(self.hidden2(self.dropout(self.hidden1(x), training=training)))

    model = MLP()
    model.build((None, 784))
    def cells(text):
        return [[c.strip() for c in line.split("│")[1:4]] for line in text.splitlines() if line.startswith("│")]

    ours, keras3 = cells(_our_summary(model)), cells(_keras_summary("mlp_subclassed"))
    assert [(name, count) for name, _, count in ours] == [(name, count) for name, _, count in keras3]
    assert [shape for _, shape, _ in ours] == ["(None, 512)", "?", "(None, 256)", "(None, 10)"]
    assert [shape for _, shape, _ in keras3] == ["(2, 512)", "?", "(2, 256)", "(2, 10)"]
