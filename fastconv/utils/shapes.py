"""Shape arithmetic over models: the "print every layer's output" habit, and receptive fields.

>>> from fastconv import layers, models
>>> m = models.Sequential([layers.Input((32, 32, 3)), layers.Conv2D(6, 5), layers.MaxPooling2D(2),
...                        layers.Conv2D(16, 5), layers.MaxPooling2D(2)])
>>> [row[2] for row in shape_trace(m, print_fn=None)]
[(None, 28, 28, 6), (None, 14, 14, 6), (None, 10, 10, 16), (None, 5, 5, 16)]
>>> [row[2:] for row in receptive_field(m)]
[(5, 1, 2.5), (6, 2, 3.0), (14, 2, 7.0), (16, 4, 8.0)]
"""
from .. import layers as L
from ..functional import conv_output_size, same_padding  # noqa: F401


def shape_trace(model, input_shape=None, print_fn=print):
    """[(layer name, layer type, output shape)] for each top-level layer, printed one per line.

    Shapes come from the symbolic graph (functional/Sequential with an Input) or from
    `model.build(input_shape)`; no forward pass over real data is needed.
    """
    if input_shape is not None and not model.built:
        model.build((None,) + tuple(input_shape))
    rows = [(layer.name, type(layer).__name__, layer.output_shape) for layer in model.layers
            if not isinstance(layer, L.InputLayer)]
    if print_fn is not None:
        width = max((len(n) + len(t) for n, t, _ in rows), default=0) + 4
        for name, kind, shape in rows:
            print_fn(f"{f'{name} ({kind})':<{width}} {shape}")
    return rows


def _window(layer):
    """(kernel, stride, dilation, padding) per spatial axis of a windowed layer, else None."""
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D)):
        return pair(layer.kernel_size), pair(layer.strides), pair(layer.dilation_rate), layer.padding
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        return pair(layer.pool_size), pair(layer.strides), (1, 1), layer.padding
    return None


def receptive_field(model, input_shape=None):
    """[(layer name, type, receptive field, jump, start)] along a chain of conv/pool layers.

    rf_out = rf_in + (k - 1) * d * jump_in; jump_out = jump_in * s;
    start_out = start_in + ((k - 1) * d / 2 - pad_before) * jump_in: the centre of the first
    output cell's field, in input coordinates where pixel i spans [i, i + 1). Square fields only (the height axis is reported).
    Layers without a spatial window (activations, BN, flatten) pass the field through; layers
    that mix positions in other ways (blocks, global pooling) end the chain.
    """
    rows, rf, jump, start = [], 1, 1, 0.5
    height = None
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            height = layer.output_shape[1]
            continue
        if height is None:
            height = input_shape[0] if input_shape else layer.input_shape[1]
        if isinstance(layer, L.ZeroPadding2D):
            start -= layer.padding[0][0] * jump
            height += layer.padding[0][0] + layer.padding[0][1]
            rows.append((layer.name, type(layer).__name__, rf, jump, start))
            continue
        win = _window(layer)
        if win is None:
            if len(layer.output_shape) != 4 or layer.output_shape[1] != height:
                break
            rows.append((layer.name, type(layer).__name__, rf, jump, start))
            continue
        (k, _), (s, _), (d, _), padding = win
        pad_before = same_padding(height, k, s, d)[0] if str(padding).lower() == "same" else 0
        rf += (k - 1) * d * jump
        start += ((k - 1) * d / 2 - pad_before) * jump
        jump *= s
        height = layer.output_shape[1]
        rows.append((layer.name, type(layer).__name__, rf, jump, start))
    return rows
