"""Shape trace and receptive-field arithmetic against hand-worked cases."""
import pytest

from fastconv import layers, models
from fastconv.utils import conv_output_size, receptive_field, shape_trace


def lenet_chain():
    return models.Sequential([layers.Input((32, 32, 3)), layers.Conv2D(6, 5), layers.MaxPooling2D(2),
                              layers.Conv2D(16, 5), layers.MaxPooling2D(2)])


def test_lenet_chain_shapes_by_hand():
    # 32x32x3 -> conv5 -> 28x28x6 -> pool2 -> 14x14x6 -> conv5 -> 10x10x16 -> pool2 -> 5x5x16
    rows = shape_trace(lenet_chain(), print_fn=None)
    assert [r[2] for r in rows] == [(None, 28, 28, 6), (None, 14, 14, 6), (None, 10, 10, 16), (None, 5, 5, 16)]
    assert [r[1] for r in rows] == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D"]


def test_shape_trace_prints_one_line_per_layer():
    lines = []
    shape_trace(lenet_chain(), print_fn=lines.append)
    assert len(lines) == 4 and lines[2].endswith("(None, 10, 10, 16)")


def test_receptive_field_hand_worked():
    # rf: 5, 5+1*1=6, 6+4*2=14, 14+1*2=16; jump 1,2,2,4; centre of first field (pixel i spans [i, i+1)):
    # 2.5, (2.5+3.5)/2=3.0, 3.0+2*2=7.0, 7.0+0.5*2=8.0
    rows = receptive_field(lenet_chain())
    assert [r[2:] for r in rows] == [(5, 1, 2.5), (6, 2, 3.0), (14, 2, 7.0), (16, 4, 8.0)]


def test_receptive_field_same_padding_and_dilation():
    m = models.Sequential([layers.Input((9, 9, 1)), layers.Conv2D(1, 3, padding="same"),
                           layers.Conv2D(1, 3, dilation_rate=2, padding="same"), layers.ReLU(),
                           layers.MaxPooling2D(2, padding="same")])
    rows = receptive_field(m)
    # conv3 same (pad 1): rf 3, start 0.5+1-1=0.5; dilated 3 (span 5, pad 2): rf 7, start 0.5;
    # ReLU passes through; pool2 same on 9 (pad 0 before): rf 8, jump 2, start 1.0
    assert [r[2:] for r in rows] == [(3, 1, 0.5), (7, 1, 0.5), (7, 1, 0.5), (8, 2, 1.0)]


@pytest.mark.parametrize("args,expected", [((28, 5, 1, "same"), 28), ((14, 5), 10), ((224, 7, 2, "same"), 112),
                                           ((56, 3, 2, "same"), 28), ((7, 3, 1, "valid", 3), 1)])
def test_conv_output_size(args, expected):
    assert conv_output_size(*args) == expected
