"""Impossible geometry is refused where it arises (build time), naming the layer and every
shape involved, at each level a user meets it: the functional kernels, a layer, Sequential,
a functional model and the CLI. Before, such models built with zero-size outputs such as
(None, 0, 0, 4) and failed only at predict time."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import functional as F
from fastconv import layers as L
from fastconv import models
from fastconv.__main__ import main

# (layer factory, input shape without the batch axis, what the error must name)
TOO_SMALL = [
    (lambda: L.Conv2D(4, 7), (5, 5, 1), ["(Conv2D)", "(None, 5, 5, 1)", "kernel_size=(7, 7)", "strides=(1, 1)",
                                         "padding='valid'", "dilation_rate=(1, 1)", "output size -1"]),
    (lambda: L.Conv2D(2, 3, dilation_rate=3, padding="valid"), (6, 8, 1), ["dilation_rate=(3, 3)", "output size 0"]),
    (lambda: L.DepthwiseConv2D(3, dilation_rate=3), (6, 6, 1),
     ["(DepthwiseConv2D)", "(None, 6, 6, 1)", "output size 0"]),
    (lambda: L.SeparableConv2D(2, 3, strides=2), (2, 9, 1), ["(SeparableConv2D)", "strides=(2, 2)", "output size 0"]),
    (lambda: L.MaxPooling2D(3, strides=2), (2, 2, 1), ["(MaxPooling2D)", "pool_size=(3, 3)", "output size 0"]),
    (lambda: L.AveragePooling2D(4), (3, 3, 2), ["(AveragePooling2D)", "pool_size=(4, 4)", "(None, 3, 3, 2)"]),
]


def _names_all(err, words):
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("make,shape,words", TOO_SMALL)
def test_layer_refuses_a_window_larger_than_its_input(make, shape, words):
    layer = make()
    with pytest.raises(ValueError) as err:
        layer.build((None,) + shape)
    _names_all(err, [layer.name] + words)
    with pytest.raises(ValueError) as err:  # symbolic (functional API)
        make()(L.Input(shape))
    _names_all(err, words)
    with pytest.raises(ValueError) as err:  # eager, on data
        make()(np.zeros((2,) + shape, np.float32))
    _names_all(err, words)


def test_sequential_from_the_issue_fails_at_build():
    with pytest.raises(ValueError) as err:
        models.Sequential([L.Conv2D(4, 7, input_shape=(5, 5, 1), name="c7"), L.Flatten(), L.Dense(2)])
    _names_all(err, TOO_SMALL[0][2] + ["c7", "window span 7 > padded input 5"])


def test_functional_model_fails_at_the_layer_that_does_not_fit():
    x = L.Input((12, 12, 1))
    y = L.Conv2D(4, 5, name="ok")(x)                 # 8x8
    y = L.MaxPooling2D(2)(y)                         # 4x4
    with pytest.raises(ValueError) as err:
        L.Conv2D(8, 5, name="too_big")(y)
    _names_all(err, ["too_big", "(None, 4, 4, 4)", "kernel_size=(5, 5)", "output size 0"])


def test_same_padding_and_fitting_windows_still_build():
    m = models.Sequential([L.Input((5, 5, 1)), L.Conv2D(4, 7, padding="same"), L.MaxPooling2D(5),
                           L.Flatten(), L.Dense(2)])
    assert m.output_shape == (None, 2) and m.layers[1].output_shape == (None, 1, 1, 4)


@pytest.mark.parametrize("shape", [(0, 0, 1), (28, 0, 1), (-1, 28, 1)])
def test_input_shapes_with_zero_or_negative_dimensions(shape):
    with pytest.raises(ValueError, match=r"\(InputLayer\): shape \(None, " + str(shape[0])):
        L.Input(shape)
    with pytest.raises(ValueError, match=r"c \(Conv2D\): input_shape .* has a dimension < 1"):
        L.Conv2D(2, 1, input_shape=shape, name="c")


@pytest.mark.parametrize("make,shape", [
    (lambda: L.Flatten(), (0, 3)),
    (lambda: L.Dense(2), (0,)),
    (lambda: L.ZeroPadding2D(1), (0, 4, 1)),
    (lambda: L.BatchNormalization(), (4, 0)),
    (lambda: L.GlobalAveragePooling2D(), (3, 0, 2)),
])
def test_zero_size_inputs_are_refused_at_build(make, shape):
    layer = make()
    with pytest.raises(ValueError, match=rf"{layer.name} \(\w+\): input shape \(None, .*\) has a dimension < 1"):
        layer.build((None,) + shape)
    with pytest.raises(ValueError, match="has a dimension < 1"):
        make()(np.zeros((2,) + shape, np.float32))


def test_reshape_to_an_incompatible_size_fails_at_build():
    with pytest.raises(ValueError, match=r"r: cannot reshape samples of shape \(3, 5\) \(15 values\) to \(4, 4\)"):
        models.Sequential([L.Input((3, 5)), L.Reshape((4, 4), name="r")])


def test_conv_output_size_refuses_instead_of_returning_zero():
    with pytest.raises(ValueError, match=r"output size -1 < 1: input size 5, kernel 7, stride 1, padding 'valid', "
                                         r"dilation 1 \(window span 7 > padded input 5\)"):
        F.conv_output_size(5, 7)
    with pytest.raises(ValueError, match="input size 0 < 1"):
        F.conv_output_size(0, 3, 1, "same")
    assert F.conv_output_size(5, 7, padding="same") == 5 and F.conv_output_size(7, 3, 1, "valid", 3) == 1


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_functional_kernels_refuse_with_the_shapes(backend):
    x = np.ones((1, 5, 5, 1), np.float32)
    words = ["window (7, 7)", "input (5, 5)", "pads (0, 0, 0, 0)"]
    with fc.backend(backend):
        for call in (lambda: F.conv2d(x, np.ones((7, 7, 1, 2), np.float32)),
                     lambda: F.conv2d(x, np.ones((3, 3, 1, 2), np.float32), dilation_rate=3),
                     lambda: F.max_pool2d(x, 7), lambda: F.avg_pool2d(x, 7)):
            with pytest.raises(ValueError) as err:
                call()
            _names_all(err, words)


@pytest.mark.parametrize("shape,words", [(("0", "0", "1"), ["--input-shape", "positive", "0 0 1"]),
                                         (("8", "8", "1"), ["(Conv2D)", "(None, 4, 4, 6)", "kernel_size=(5, 5)"])])
def test_cli_summary_of_an_impossible_input_shape(capsys, shape, words):
    assert main(["summary", "lenet5", "--input-shape", *shape]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastconv summary: error: "), err
    for w in words:
        assert w in lines[0]
