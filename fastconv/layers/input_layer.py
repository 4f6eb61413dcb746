"""Input, InputLayer and KerasTensor: the symbolic side of the functional API.

A KerasTensor carries only a shape (batch axis None) and a dtype, plus the graph node that
produced it. Calling a layer on KerasTensors records a Node and returns new KerasTensors;
`Model(inputs, outputs)` then walks the nodes back from the outputs.

>>> from fastconv import layers
>>> x = layers.Input((28, 28, 1)); x.shape
(None, 28, 28, 1)
>>> layers.Conv2D(8, 3, padding="same", strides=2)(x).shape
(None, 14, 14, 8)
"""
import numpy as np

from .layer import Layer, check_dims, flatten


class Node:
    """One call of `layer` on symbolic inputs; `outputs` are the KerasTensors it produced."""

    def __init__(self, layer, inputs, args=(), kwargs=None):
        self.layer = layer
        self.inputs = inputs
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.outputs = None

    @property
    def parents(self):
        return [t._history[0] for t in flatten(self.inputs) if isinstance(t, KerasTensor)]


class KerasTensor:
    """A symbolic tensor: shape and dtype, no data."""

    def __init__(self, shape, dtype="float32", name=None):
        self.shape = tuple(None if s is None else int(s) for s in shape)
        self.dtype = np.dtype(dtype).name
        self.name = name
        self._history = None  # (Node, index among the node's flattened outputs)

    @property
    def ndim(self):
        return len(self.shape)

    def __add__(self, other):
        from .merge import Add
        return Add()([self, other])

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


class InputLayer(Layer):
    """The source of a functional graph: holds the input's shape, has no weights."""

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, **kwargs):
        if "input_shape" in kwargs:  # Keras 2 spelling
            shape = kwargs.pop("input_shape")
        super().__init__(name=name, dtype=dtype, **kwargs)
        if batch_shape is None:
            if shape is None:
                raise ValueError("InputLayer needs `shape` (without the batch axis) or `batch_shape`")
            if isinstance(shape, int):
                shape = (shape,)
            batch_shape = (batch_size,) + tuple(shape)
        self._batch_input_shape = tuple(batch_shape)
        check_dims(self, self._batch_input_shape, "shape")
        self._build_shape = self._batch_input_shape
        self._output_shape = self._batch_input_shape
        self.built = True
        node = Node(self, [])
        node.outputs = KerasTensor(self._batch_input_shape, self.dtype, name=self.name)
        node.outputs._history = (node, 0)
        self._inbound_nodes.append(node)  # so layer.output is the Input tensor, as in Keras

    def call(self, inputs, training=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None):
    """A symbolic input of `shape` (without the batch axis) for the functional API."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name,
                      batch_shape=batch_shape).output
