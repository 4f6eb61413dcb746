"""Merge layers: Concatenate(axis=-1) / concatenate(inputs), and the elementwise Add,
Subtract (exactly 2 inputs), Multiply, Average, Maximum, Minimum (and their lower-case
functions). The elementwise ones need inputs of one rank whose axes are equal or 1 (broadcast,
as Keras); Maximum and Minimum propagate NaN (np.maximum's rule), and their gradient goes to
the first input on ties.

>>> from fastconv import layers
>>> a, b = layers.Input((4, 4, 3)), layers.Input((4, 4, 5))
>>> layers.concatenate([a, b]).shape
(None, 4, 4, 8)
"""
from ..autograd import ops
from .layer import Layer


def _check_list(layer, shapes):
    if not isinstance(shapes, (list, tuple)) or len(shapes) < 2:
        raise ValueError(f"{layer.name}: {type(layer).__name__} needs a list of at least 2 inputs, got {shapes!r}")


class Concatenate(Layer):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def compute_output_shape(self, input_shape):
        _check_list(self, input_shape)
        ranks = {len(s) for s in input_shape}
        if len(ranks) != 1:
            raise ValueError(f"{self.name}: inputs must have equal ranks, got shapes {list(input_shape)}")
        ndim = ranks.pop()
        axis = self.axis % ndim
        out = list(input_shape[0])
        for s in input_shape[1:]:
            for i in range(1, ndim):
                if i != axis and None not in (s[i], out[i]) and s[i] != out[i]:
                    raise ValueError(f"{self.name}: shapes must match except on axis {self.axis}, got "
                                     f"{list(input_shape)}")
        sizes = [s[axis] for s in input_shape]
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def call(self, inputs):
        self.compute_output_shape([tuple(t.shape) for t in inputs])
        return ops.concatenate(list(inputs), axis=self.axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def _broadcast_dim(a, b):
    """One axis of two equal-rank shapes under Keras's merge rule: equal, or one of them 1."""
    if a == 1:
        return b
    if b == 1 or a == b:
        return a
    return None if None in (a, b) else False


class _Elementwise(Layer):
    def compute_output_shape(self, input_shape):
        # Inputs of one rank broadcast where an axis is 1 (Keras's rule: squeeze-and-excitation
        # multiplies (N, H, W, C) by (N, 1, 1, C)).
        _check_list(self, input_shape)
        out = tuple(input_shape[0])
        for s in input_shape[1:]:
            dims = [_broadcast_dim(a, b) for a, b in zip(s[1:], out[1:])]
            if len(s) != len(out) or any(d is False for d in dims):
                raise ValueError(f"{self.name}: {type(self).__name__} needs inputs of one shape (or axes of "
                                 f"size 1 that broadcast), got {list(input_shape)}")
            out = (out[0],) + tuple(dims)
        return out

    def call(self, inputs):
        self.compute_output_shape([tuple(t.shape) for t in inputs])
        out = inputs[0]
        for t in inputs[1:]:
            out = self._combine(out, t)
        return out


class Add(_Elementwise):

    def call(self, inputs, _activation=None):
        # _activation: a fused Add -> ReLU chain (engine/fusion.py): the last add and the
        # relu run as one kernel.
        self.compute_output_shape([tuple(t.shape) for t in inputs])
        out = inputs[0]
        for t in inputs[1:-1]:
            out = out + t
        if _activation is not None and len(inputs) > 1:
            return ops.add_activation(out, inputs[-1], _activation)
        return out + inputs[-1] if len(inputs) > 1 else out


class Subtract(_Elementwise):
    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"{self.name}: Subtract needs exactly 2 inputs, got {input_shape!r}")
        return super().compute_output_shape(input_shape)

    @staticmethod
    def _combine(a, b):
        return a - b


class Multiply(_Elementwise):
    @staticmethod
    def _combine(a, b):
        return a * b


class Maximum(_Elementwise):
    _combine = staticmethod(ops.maximum)


class Minimum(_Elementwise):
    _combine = staticmethod(ops.minimum)


class Average(_Elementwise):
    def call(self, inputs):
        return super().call(inputs) * (1.0 / len(inputs))

    @staticmethod
    def _combine(a, b):
        return a + b


def concatenate(inputs, axis=-1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)


def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)
