"""Sequential: a plain stack of layers, each feeding the next.

The input shape comes from an `Input`/`InputLayer` added first, from `input_shape=` on the
first layer, from `build(input_shape)`, or from the first call on data; once known, every
layer is built and its output shape recorded (for summary()).

>>> from fastconv import layers, models
>>> m = models.Sequential([layers.Dense(520, activation="relu", input_shape=(784,)), layers.Dense(10)])
>>> m.count_params(), m.output_shape
(413410, (None, 10))
"""
from ..layers.input_layer import InputLayer, KerasTensor
from ..layers.layer import Layer
from . import fusion
from .model import Model


class Sequential(Model):
    def __init__(self, layers=None, name=None, trainable=True, **kwargs):
        super().__init__(name=name, trainable=trainable, **kwargs)
        self._input_batch_shape = None
        self._input_layer = None  # the graph's InputLayer: the user's Input, or one made once
        self._graph = None        # ([input tensor], [output tensor]) of the latest symbolic pass
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, KerasTensor) and isinstance(layer._history[0].layer, InputLayer):
            layer = layer._history[0].layer
        if isinstance(layer, InputLayer):
            if self._tracked:
                raise ValueError(f"{self.name}: an Input can only be added first, before any layer")
            self._input_batch_shape = layer._batch_input_shape
            self._input_layer = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}: Sequential.add expects a Layer, got {type(layer).__name__}")
        if not self._tracked and self._input_batch_shape is None and layer._batch_input_shape is not None:
            self._input_batch_shape = (None,) + tuple(layer._batch_input_shape[1:])
        self._tracked.append(layer)
        if self._input_batch_shape is not None:
            self._build_graph()

    def pop(self):
        if not self._tracked:
            raise ValueError(f"{self.name}: there is no layer to pop")
        layer = self._tracked.pop()
        if self._input_batch_shape is not None and self._tracked:
            self._build_graph()
        return layer

    def _build_graph(self):
        # A symbolic pass builds every layer and records its output shape.
        if self._input_layer is None or tuple(self._input_layer._batch_input_shape) != tuple(self._input_batch_shape):
            # as Keras, an input_shape= or build() shape gets one InputLayer (named input_layer...)
            self._input_layer = InputLayer(batch_shape=self._input_batch_shape)
        x = inputs = self._input_layer.output
        for layer in self._tracked:
            x = layer(x)
        self._graph = ([inputs], [x])
        self.built = True
        self._build_shape = self._input_batch_shape
        self._output_shape = x.shape

    def build(self, input_shape=None):
        if input_shape is None:
            input_shape = self._input_batch_shape
        if input_shape is None:
            raise ValueError(f"{self.name}: build() needs an input_shape (the model has no Input)")
        self._input_batch_shape = (None,) + tuple(input_shape)[1:]
        self._build_graph()

    @property
    def inputs(self):
        """The graph's input tensor, in a list (Keras's Sequential.inputs), once the input shape is known."""
        return list(self._graph_tensors("inputs")[0])

    @property
    def outputs(self):
        return list(self._graph_tensors("outputs")[1])

    def _graph_tensors(self, what):
        graph = self._graph
        if graph is None:
            raise AttributeError(f"Sequential model {self.name!r} has no {what} yet: its input shape is "
                                 f"unknown (start it with keras.Input(shape=...) or call build())")
        return graph

    def _input_spec(self):
        return None if self._input_batch_shape is None or not self.built else [self._input_batch_shape]

    def _fusion(self, training):
        return fusion.plan_layers(self._tracked, training)

    def call(self, inputs, training=None):
        from ..layers.layer import _training_ctx
        # An unset mode (None in the call context) reaches the layers as None, so each takes its
        # own default (the augmentation layers augment, as in Keras 3).
        return fusion.run_layers(self._tracked, inputs, training or _training_ctx.get())

    def get_config(self):
        from ..saving.serialization import serialize
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype,
                "input_shape": None if self._input_batch_shape is None else list(self._input_batch_shape),
                "layers": [serialize(layer) for layer in self._tracked]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from ..saving.serialization import deserialize
        if not isinstance(config.get("layers"), list):
            raise ValueError("corrupt Sequential config: 'layers' must be a list")
        model = cls(name=config.get("name"), trainable=config.get("trainable", True), dtype=config.get("dtype"))
        if config.get("input_shape") is not None:
            model.add(InputLayer(batch_shape=tuple(config["input_shape"])))
        for layer_config in config["layers"]:
            model.add(deserialize(layer_config, custom_objects))
        return model

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._tracked:
            shape = layer.compute_output_shape(shape)
        return shape
