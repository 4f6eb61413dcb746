"""Layer: the Keras-style base class every layer and model derives from.

A layer owns Variables created in `build(input_shape)` through `add_weight`, computes in
`call(inputs, training=None)`, and is used through `__call__`, which

- builds lazily from the first input's shape,
- converts numpy arrays to Tensors (cast to the layer's dtype, as Keras autocasts),
- passes `training` down to nested layers (an outer `model(x, training=True)` reaches every
  sublayer that is called with training=None); where nothing gave it (a direct call outside
  fit/evaluate/predict), each layer takes the default of its own `call` signature, as Keras 3
  does: the augmentation layers default to True, everything else to False,
- and, given symbolic `KerasTensor`s (functional API), records a graph node instead of
  computing.

Sublayers assigned as attributes (also inside lists/tuples/dicts) are tracked automatically, so
`weights`, `trainable` and `count_params()` see them; a layer shared by several parents has
its weights counted once. `trainable` is recursive as in Keras 3.

>>> from fastconv import layers
>>> d = layers.Dense(3, name="d"); _ = d.build((None, 4)); d.count_params()
15
"""
import contextvars
import functools
import inspect
import numbers
import re
import threading
from collections import Counter

import numpy as np

from .. import initializers, regularizers
from ..autograd import Tensor, Variable, no_grad
from ..backend import get_backend
from ..functional import is_device_array
from ..saving import serialization as _serialization

_name_counts = Counter()
# Building creates weights: two threads making a model's first calls at once must not both
# build a layer (it would end up with two sets of weights). One lock for every layer, since
# building is rare and nests (a model builds its layers); reentrant for that nesting.
_build_lock = threading.RLock()
_training_ctx = contextvars.ContextVar("fastconv_training", default=None)


def to_snake_case(name):
    """Keras's class-name -> layer-name rule: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(base):
    """base, base_1, base_2, ... unique within the process (like Keras's auto names)."""
    n = _name_counts[base]
    _name_counts[base] += 1
    return base if n == 0 else f"{base}_{n}"


def clear_session():
    """Restart the auto-naming counters (Keras's clear_session, as far as naming goes)."""
    _name_counts.clear()




def flatten(structure):
    if isinstance(structure, (list, tuple)):
        return [t for s in structure for t in flatten(s)]
    if isinstance(structure, dict):
        return [t for k in structure for t in flatten(structure[k])]
    return [structure]


def map_structure(fn, structure):
    if isinstance(structure, (list, tuple)):
        return type(structure)(map_structure(fn, s) for s in structure)
    if isinstance(structure, dict):
        return {k: map_structure(fn, v) for k, v in structure.items()}
    return fn(structure)


def shape_of(structure):
    """Shapes of a structure of tensors/arrays with the batch axis shown as None."""
    return map_structure(lambda t: (None,) + tuple(t.shape[1:]), structure)


@functools.lru_cache(maxsize=1)
def _keras_tensor_class():
    # input_layer imports this module: imported on first call, then cached (a function-level
    # import statement costs ~1 us at every layer call, on the batch-1 predict path).
    from .input_layer import KerasTensor
    return KerasTensor


def _accepts(fn, arg):
    # Asked at every layer call: cached per underlying function (inspect.signature costs
    # ~0.1 ms, about what a small layer's kernel takes).
    return _function_accepts(getattr(fn, "__func__", fn), arg)


@functools.lru_cache(maxsize=4096)
def _function_accepts(fn, arg):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return arg in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@functools.lru_cache(maxsize=4096)
def _function_default_training(fn):
    """The boolean default of `fn`'s `training` argument, False when it has none."""
    try:
        param = inspect.signature(fn).parameters.get("training")
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is True



def _shapes_in(structure):
    """The shapes (tuples of ints/None) in a shape or a list/dict of shapes."""
    if isinstance(structure, dict):
        return [s for v in structure.values() for s in _shapes_in(v)]
    if isinstance(structure, (list, tuple)) and all(d is None or isinstance(d, numbers.Integral) for d in structure):
        return [tuple(structure)]
    if isinstance(structure, (list, tuple)):
        return [s for v in structure for s in _shapes_in(v)]
    return []


def check_dims(layer, shape, what="input shape", context=""):
    """Refuse a known non-batch dimension < 1 in `shape` (a shape or a structure of shapes).

    Run on every layer's build input and symbolic output, so that a zero-size tensor (Flatten
    of nothing, Dense on 0 features, an empty Input) is an error where it arises, naming the
    layer, instead of a model that builds and fails at predict time."""
    for s in _shapes_in(shape):
        if any(d is not None and d < 1 for d in s[1:]):
            raise ValueError(f"{layer.name} ({type(layer).__name__}): {what} {s} has a dimension < 1"
                             f"{context}; every dimension but the batch axis must be >= 1")


def backend_zeros(shape, dtype):
    """Zeros where the active backend keeps arrays (dry runs that infer shapes): on the GPU
    for the cuda backend, so they meet device weights there."""
    if get_backend() == "cuda":
        from .. import cuda
        return cuda.zeros(shape, dtype)
    return np.zeros(shape, dtype)

class Layer(_serialization.RecordsArguments):
    """Base layer. Subclasses override `build`, `call` and `compute_output_shape`.

    get_config() defaults to the constructor's arguments (recorded by RecordsArguments) with
    the current name, trainable flag and dtype; from_config passes a config back to it."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # As Keras does, a layer counts as built once any build() returns, also when the user
        # calls build(input_shape) directly.
        orig = cls.__dict__.get("build")
        if orig is not None and not getattr(orig, "_marks_built", False):
            @functools.wraps(orig)
            def build(self, *args, **kw):
                if args:
                    check_dims(self, args[0])
                out = orig(self, *args, **kw)
                _freeze_new_sublayers(self)
                self.built = True
                if self._build_shape is None and args:
                    self._build_shape = args[0]
                return out
            build._marks_built = True
            cls.build = build

    def __init__(self, trainable=True, name=None, dtype=None, **kwargs):
        input_shape = kwargs.pop("input_shape", None)
        batch_input_shape = kwargs.pop("batch_input_shape", None)
        batch_size = kwargs.pop("batch_size", None)
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {sorted(kwargs)}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        self._tracked = []            # sublayers held by containers (Sequential, graphs)
        self._own_trainable = []      # Variables created trainable (the `trainable` setter toggles them)
        self._own_weights = []
        self._weight_keys = []
        self._regularized = []        # (Variable, regularizer) pairs
        self._activity_losses = []
        self._trainable = bool(trainable)
        self.name = name if name is not None else unique_name(to_snake_case(type(self).__name__))
        self.dtype = np.dtype(dtype or "float32").name
        self.built = False
        self._build_shape = None
        self._output_shape = None
        self._built_batch = None
        self._inbound_nodes = []  # this layer's calls on graph tensors (keras.Input and after)
        if batch_input_shape is not None:
            self._batch_input_shape = tuple(batch_input_shape)
        elif input_shape is not None:
            self._batch_input_shape = (batch_size,) + tuple(input_shape)
        else:
            self._batch_input_shape = None
        if self._batch_input_shape is not None:
            check_dims(self, self._batch_input_shape, "input_shape")

    # -- sublayer tracking -------------------------------------------------------------------
    def _sublayers(self):
        """Explicitly tracked layers, then layers found in public attributes (also inside
        lists, tuples and dicts, looked up at each use so later appends are seen)."""
        out = list(self._tracked)
        for key, value in self.__dict__.items():
            if not key.startswith("_"):
                for layer in _layers_in(value):
                    if layer is not self and not any(layer is o for o in out):
                        out.append(layer)
        return out

    # -- weights -----------------------------------------------------------------------------
    def add_weight(self, name, shape, initializer="glorot_uniform", trainable=True, regularizer=None,
                   dtype=None):
        """Create, register and return a Variable of `shape` drawn from `initializer`."""
        dtype = np.dtype(dtype or self.dtype).name
        shape = tuple(int(s) for s in shape)
        init = initializers.get(initializer)
        value = np.asarray(init(shape, dtype), dtype=dtype).reshape(shape)
        if get_backend() == "cuda":  # drawn on the host (same values as on the CPU), kept on the GPU
            from .. import cuda
            value = cuda.to_device(value)
        var = Variable(value, name=f"{self.name}/{name}", trainable=bool(trainable) and self._trainable)
        self._own_weights.append(var)
        self._weight_keys.append(name)  # the stable per-layer key used in weight files
        if trainable:
            self._own_trainable.append(var)
        reg = regularizers.get(regularizer)
        if reg is not None:
            self._regularized.append((var, reg))
        return var

    def _walk(self, seen=None):
        """This layer and every tracked sublayer, each once (shared layers count once)."""
        seen = set() if seen is None else seen
        if id(self) in seen:
            return
        seen.add(id(self))
        yield self
        for layer in self._sublayers():
            yield from layer._walk(seen)

    @property
    def weights(self):
        out, seen = [], set()
        for layer in self._walk():
            for w in layer._own_weights:
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)
        return out

    variables = weights

    @property
    def trainable_weights(self):
        return [w for w in self.weights if w.trainable] if self._trainable else []

    @property
    def non_trainable_weights(self):
        return [w for w in self.weights if not w.trainable] if self._trainable else self.weights

    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        # Keras 3: recursive, and the variables follow so gradients are not even computed.
        value = bool(value)
        for layer in self._walk():
            layer._trainable = value
            for v in layer._own_trainable:
                v.trainable = value

    @property
    def layers(self):
        return self._sublayers()

    def count_params(self):
        if not self.built:
            raise ValueError(f"layer {self.name!r} is not built yet, so its weights do not exist; "
                             f"call it on data or call build(input_shape) first")
        return int(sum(int(np.prod(w.shape)) for w in self.weights))

    def get_weights(self):
        return [w.data.get() if is_device_array(w.data) else np.array(w.data, copy=True)
                for w in self.weights]

    def set_weights(self, weights):
        mine = self.weights
        weights = list(weights)
        if len(weights) != len(mine):
            raise ValueError(f"{self.name}: set_weights got {len(weights)} arrays, expected {len(mine)} "
                             f"(shapes {[tuple(w.shape) for w in mine]})")
        for i, (v, a) in enumerate(zip(mine, weights)):
            a = np.asarray(a)
            if tuple(a.shape) != tuple(v.shape):
                raise ValueError(f"{self.name}: weight {i} ({v.name}) has shape {tuple(v.shape)}, "
                                 f"got an array of shape {tuple(a.shape)}")
        for v, a in zip(mine, weights):
            v.assign(np.asarray(a, dtype=v.dtype))

    # -- losses ------------------------------------------------------------------------------
    def add_loss(self, loss):
        self._activity_losses.append(loss)

    @property
    def losses(self):
        """Weight penalties (computed from the current weights, as Keras 3 does) plus losses
        added with add_loss during the last call, for this layer and all sublayers."""
        out = []
        for layer in self._walk():
            # Keras 3 penalises trainable weights only: a frozen layer adds nothing.
            out.extend(reg(v) for v, reg in layer._regularized if v.trainable)
            out.extend(layer._activity_losses)
        return out

    # -- building and calling ----------------------------------------------------------------
    def build(self, input_shape):
        check_dims(self, input_shape)
        _freeze_new_sublayers(self)
        self.built = True

    def _maybe_build(self, input_shape):
        if self.built:
            return
        with _build_lock:
            if not self.built:  # another thread may have built it while this one waited
                self._build_shape = input_shape
                self.build(input_shape)
                self.built = True

    def call(self, inputs, training=None):
        raise NotImplementedError(f"{type(self).__name__} must implement call()")

    def compute_output_shape(self, input_shape):
        """Default: a dry run on zeros (batch 1) under no_grad; layers override with arithmetic."""
        def zeros(shape):
            if any(s is None for s in shape[1:]):
                raise ValueError(f"{self.name}: cannot infer the output shape of {type(self).__name__} "
                                 f"for input shape {shape} with unknown dimensions")
            return Tensor(backend_zeros((1,) + tuple(shape[1:]), self.dtype))
        with no_grad():
            out = self(map_shapes(zeros, input_shape), training=False)
        return shape_of(out)

    def __call__(self, inputs, *args, **kwargs):
        KerasTensor = _keras_tensor_class()
        flat = flatten(inputs)
        if any(isinstance(t, KerasTensor) for t in flat):
            return self._symbolic_call(inputs, args, kwargs)
        inputs = map_structure(self._to_tensor, inputs)
        if not self.built:  # summary() shows the batch size a subclassed model was built with, as Keras
            self._built_batch = next((t.shape[0] for t in flatten(inputs) if len(t.shape)), None)
        if not self.built:
            self._maybe_build(shape_of(inputs))
        training = kwargs.pop("training", None)
        if training is None:
            training = _training_ctx.get()
        # Unset (None) stays unset for the sublayers, so each falls back to its own default.
        passed_down = None if training is None else bool(training)
        if training is None:
            training = _function_default_training(getattr(self.call, "__func__", self.call))
        training = bool(training)
        if _accepts(self.call, "training"):
            kwargs["training"] = training
        self._activity_losses = []
        token = _training_ctx.set(passed_down)
        try:
            out = self.call(inputs, *args, **kwargs)
        finally:
            _training_ctx.reset(token)
        self._output_shape = shape_of(out)
        return out

    def _symbolic_call(self, inputs, args, kwargs):
        from .input_layer import KerasTensor, Node
        in_shapes = map_structure(lambda t: t.shape, inputs)
        self._maybe_build(in_shapes)
        out_shapes = self.compute_output_shape(in_shapes)
        check_dims(self, out_shapes, "output shape", f" for input shape {in_shapes}")
        self._output_shape = out_shapes
        node = Node(self, inputs, args, kwargs)
        outputs = map_shapes(lambda s: KerasTensor(s, self.dtype), out_shapes)
        for i, t in enumerate(flatten(outputs)):
            t._history = (node, i)
        node.outputs = outputs
        self._inbound_nodes.append(node)
        return outputs

    def _to_tensor(self, x):
        if isinstance(x, Tensor):
            return x
        arr = x if is_device_array(x) else np.asarray(x)
        if arr.dtype.kind == "f" and arr.dtype != self.dtype:
            arr = arr.astype(self.dtype)
        return Tensor(arr)

    @property
    def output(self):
        """The graph tensor(s) this layer's latest call on graph tensors produced, as Keras's
        layer.output: keras.Model(model.inputs, layer.output) is a feature extractor."""
        return self._latest_node("output").outputs

    @property
    def input(self):
        """The graph tensor(s) this layer's latest call on graph tensors took."""
        return self._latest_node("input").inputs

    def _latest_node(self, what):
        if not self._inbound_nodes:
            raise AttributeError(f"layer {self.name!r} has not been called on graph tensors (keras.Input "
                                 f"and the layers after it), so it has no {what} tensor; build the model "
                                 f"from keras.Input first")
        return self._inbound_nodes[-1]

    @property
    def output_shape(self):
        if self._output_shape is None:
            raise AttributeError(f"layer {self.name!r} has not been called yet, so it has no output shape")
        return self._output_shape

    @property
    def input_shape(self):
        if self._build_shape is None:
            raise AttributeError(f"layer {self.name!r} is not built yet, so it has no input shape")
        return self._build_shape

    def get_config(self):
        return {**_serialization.arguments_config(self), "name": self.name, "trainable": self.trainable,
                "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        """The layer a get_config() describes (Keras's default: the config as keyword arguments,
        serialized objects in it such as initializers deserialized first)."""
        return _serialization.from_config_arguments(cls, config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _freeze_new_sublayers(layer):
    """A layer made with trainable=False (e.g. rebuilt from the config of a frozen block)
    freezes what it creates in __init__ and build too, as the recursive setter would have."""
    if not layer._trainable:
        layer.trainable = False


def map_shapes(fn, shape):
    """fn over one shape (a tuple of ints/None) or over each shape of a list of shapes."""
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(s, (list, tuple)) for s in shape):
        return [fn(tuple(s)) for s in shape]
    return fn(tuple(shape))


def _layers_in(value):
    if isinstance(value, Layer):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _layers_in(item)]
    if isinstance(value, dict):
        return [v for item in value.values() for v in _layers_in(item)]
    return []
