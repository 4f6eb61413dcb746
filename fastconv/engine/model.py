"""Model: a Layer that can be compiled, trained, evaluated, summarised and saved.

Three ways to make one, as in Keras:

- functional: ``Model(inputs, outputs)`` (returns a `Functional`, see functional.py);
- `Sequential([...])` (sequential.py);
- subclassing: define layers as attributes in ``__init__`` and the forward pass in
  ``call(self, inputs, training=None)``; layers, lists of layers and nested models are tracked.

`train_step` / `test_step` return the running values (since the last `reset_metrics()`) of the
loss and the compiled metrics, as python floats (0-d device arrays on the GPU, so a step
never waits for a host read; `fit` reads them when it shows or logs them); the loss is the
batch-size weighted mean of the total loss (data loss + regularisation), as Keras reports it.
`fit/evaluate/predict` are the loop in `fastconv.training`.
"""
import contextlib
import contextvars
import copy
import threading

import numpy as np

from ..autograd import Tensor, no_grad
from ..autograd.tensor import is_grad_enabled
from ..functional import array_of, scalar
from ..metrics import _accumulate, _mean, _result
from ..layers.layer import Layer, _build_lock, backend_zeros, flatten, map_structure
from ..saving.serialization import record_arguments
from . import inference


class _LossTracker:
    """Batch-size weighted running mean of the loss (Keras's loss tracker); a device loss is
    summed on the device (no host read per step)."""

    name = "loss"

    def __init__(self):
        self.reset_state()

    def update_state(self, value, weight=1.0):
        self.total = _accumulate(self.total, scalar(value) * weight)
        self.count += weight

    def result(self):
        return _result(_mean(self.total, self.count))

    def reset_state(self):
        self.total, self.count = 0.0, 0.0


def _training():
    """fastconv.training (imported on first use: it imports this module), kept: predict on
    one image is a few tens of microseconds and the import statement cost one of them."""
    global _training_module
    if _training_module is None:
        from .. import training
        _training_module = training
    return _training_module


_training_module = None


def _array(y):
    """Targets and weights as arrays: device arrays stay where they are, the rest NumPy."""
    if y is None:
        return None
    if isinstance(y, (list, tuple, dict)):
        return map_structure(_array, y)
    return array_of(y)


# (model, its metrics for the current evaluate call): per thread, as contextvars start empty
# in a new thread.
_scoped_metrics = contextvars.ContextVar("fastconv_scoped_metrics", default=None)
_metrics_lock = threading.Lock()


def _batch_size(x):
    first = flatten(x)[0]
    return int(first.shape[0])


class Model(Layer):
    def __new__(cls, *args, **kwargs):
        # Model(inputs, outputs) builds a graph model, as Keras does.
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from .functional import Functional
            obj = object.__new__(Functional)
        else:
            obj = object.__new__(cls)
        record_arguments(obj, args, kwargs)  # the default get_config of subclassed models
        return obj

    def __init__(self, *args, **kwargs):
        if args or "inputs" in kwargs or "outputs" in kwargs:
            raise TypeError("a subclassed Model takes only trainable/name/dtype; use "
                            "Model(inputs, outputs) for a functional model")
        super().__init__(**kwargs)
        self.optimizer = None
        self.compiled = False
        self.stop_training = False  # set by callbacks (EarlyStopping) to end fit()
        self._loss_fn = None
        self._compiled_metrics = []
        self._loss_tracker = _LossTracker()

    # -- the graph's own tensors (Keras's model.input / model.output) ---------------------------
    @property
    def input(self):
        return self._own_tensors("inputs")

    @property
    def output(self):
        return self._own_tensors("outputs")

    def _own_tensors(self, what):
        if not hasattr(type(self), what):  # Functional and Sequential define inputs/outputs
            raise AttributeError(f"model {self.name!r} is subclassed: it has no graph, so no {what[:-1]} "
                                 f"tensor (build a functional or Sequential model from keras.Input)")
        tensors = getattr(self, what)
        return tensors[0] if len(tensors) == 1 else tensors

    # -- building and calling ----------------------------------------------------------------
    def fusion_plan(self, training=False):
        """The layer chains this model's own graph runs as single ops in the given mode, e.g.
        ['conv2d + batch_normalization + re_lu'] (engine/fusion.py); [] for subclassed models.
        Blocks that run their own layer lists (the zoo's residual and dense blocks) fuse
        inside as well; those chains are not listed here."""
        plan = self._fusion(bool(training)) if hasattr(self, "_fusion") else {}
        return [" + ".join(layer.name for layer in chain.layers) for chain in _chains(plan)]

    def _maybe_build(self, input_shape):
        if self.built:
            return
        with _build_lock:  # as Layer._maybe_build: one thread builds, others wait for it
            if self.built:
                return
            self._build_shape = input_shape
            if type(self).build.__wrapped__ is not Model.build.__wrapped__:
                self.build(input_shape)
            self.built = True  # sublayers build themselves during the call that follows

    def build(self, input_shape):
        """Build a subclassed model by a dry forward pass on zeros of `input_shape` (batch 1)."""
        shapes = input_shape if isinstance(input_shape, list) else tuple(input_shape)
        self.built, self._build_shape = True, shapes

        def zeros(shape):
            if any(s is None for s in tuple(shape)[1:]):
                raise ValueError(f"{self.name}: build needs every non-batch dimension, got {tuple(shape)}")
            return Tensor(backend_zeros((1,) + tuple(shape)[1:], self.dtype))
        dummy = [zeros(s) for s in shapes] if isinstance(shapes, list) else zeros(shapes)
        with no_grad():
            self(dummy, training=False)

    def _input_spec(self):
        """Expected input shapes (a list, batch axis None), or None when any shape goes."""
        return None

    def __call__(self, inputs, *args, **kwargs):
        if kwargs.get("training") is False and len(kwargs) == 1 and not args and not is_grad_enabled():
            # inference with nothing to differentiate: the model's prepared plan (engine/inference.py)
            out = inference.predict(self, inputs)
            if out is not None:
                return Tensor(out)
        self._check_input_spec(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def _check_input_spec(self, inputs):
        spec = self._input_spec()
        if spec is not None:
            from ..layers.input_layer import KerasTensor
            got = flatten(inputs)
            if len(got) != len(spec):
                raise ValueError(f"model {self.name!r} expects {len(spec)} input(s) of shapes {spec}, "
                                 f"got {len(got)}")
            for i, (t, want) in enumerate(zip(got, spec)):
                shape = tuple(t.shape) if isinstance(t, KerasTensor) else tuple(np.shape(t.data if isinstance(t, Tensor) else t))
                if len(shape) != len(want) or any(w is not None and s is not None and s != w
                                                  for s, w in zip(shape[1:], want[1:])):
                    raise ValueError(f"input {i} of model {self.name!r} is incompatible: expected shape "
                                     f"{tuple(want)}, got shape {shape}")

    def call(self, inputs, training=None):
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs, training=None)")

    # -- compile and steps -------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, **kwargs):
        """Resolve optimizer, loss and metrics by name or instance (Keras identifiers)."""
        from .. import losses, metrics as metrics_mod, optimizers
        if loss_weights is not None:
            raise NotImplementedError("loss_weights (multi-output losses) is not supported")
        self.optimizer = optimizers.get(optimizer)
        self._compile_arguments = {"loss": loss, "metrics": metrics}  # saved by model.save
        self.loss = loss
        self._loss_fn = None if loss is None else losses.get(loss)
        metrics = [] if metrics is None else (list(metrics) if isinstance(metrics, (list, tuple)) else [metrics])
        self._compiled_metrics = [metrics_mod.get(m, loss=loss) for m in metrics]
        self._loss_tracker = _LossTracker()
        from ..distribute.context import current_strategy
        self._distribute_strategy = current_strategy()  # compiled in a strategy's scope: train with it
        self.compiled = True

    def _require_compiled(self):
        if not self.compiled:
            raise RuntimeError(f"model {self.name!r} must be compiled before training/evaluation; "
                               f"call model.compile(optimizer, loss, metrics)")

    @property
    def metrics(self):
        """The loss tracker and the compiled metrics; inside an evaluate() call, that call's
        own copies (_metrics_scope)."""
        if not self.compiled:
            return []
        scoped = _scoped_metrics.get()
        if scoped is not None and scoped[0] is self:
            return scoped[1]
        return [self._loss_tracker] + list(self._compiled_metrics)

    @contextlib.contextmanager
    def _metrics_scope(self):
        """Give the calls inside (in this thread) fresh copies of the metrics, so that
        concurrent evaluate() calls never mix their counts; on success the model's own metrics
        then take the copies' state, so `model.metrics` reports the last finished call, as in
        Keras. fastconv.training.evaluate runs in one."""
        with _metrics_lock:  # a copy never sees another call's results half written
            shared = self.metrics
            fresh = [copy.deepcopy(m) for m in shared]
        token = _scoped_metrics.set((self, fresh))
        try:
            yield fresh
        finally:
            _scoped_metrics.reset(token)
        with _metrics_lock:
            for mine, theirs in zip(shared, fresh):
                vars(mine).update(vars(theirs))

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    def reset_metrics(self):
        for m in self.metrics:
            m.reset_state()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        """Data loss plus every regularisation penalty (`self.losses`), as a scalar Tensor."""
        if self._loss_fn is None:
            raise ValueError(f"model {self.name!r} was compiled without a loss")
        total = self._loss_fn(y, y_pred, sample_weight) if sample_weight is not None else self._loss_fn(y, y_pred)
        for penalty in self.losses:
            total = total + penalty
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None, loss=None):
        tracker, *compiled = self.metrics  # this call's own copies inside _metrics_scope
        if loss is not None:
            tracker.update_state(loss.data, _batch_size(x))
        pred = _array(y_pred)
        for m in compiled:
            if sample_weight is None:
                m.update_state(y, pred)
            else:
                m.update_state(y, pred, sample_weight=sample_weight)
        return {m.name: scalar(m.result()) for m in self.metrics}

    def train_step(self, x, y, sample_weight=None):
        """One optimisation step on a batch; returns the running loss/metric values."""
        self._require_compiled()
        y = _array(y)
        sample_weight = _array(sample_weight)
        y_pred = self(x, training=True)
        loss = self.compute_loss(x, y, y_pred, sample_weight)
        # Read after the forward pass: a model without an input shape builds during it.
        variables = self.trainable_weights
        for v in variables:
            v.zero_grad()
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None:
            loss.backward()
        else:  # data parallel: gradients summed over the ranks during backward
            strategy.backward(loss, variables)
        self.optimizer.apply_gradients([(v.grad, v) for v in variables if v.grad is not None])
        return self.compute_metrics(x, y, y_pred, sample_weight, loss)

    def test_step(self, x, y, sample_weight=None):
        self._require_compiled()
        y, sample_weight = _array(y), _array(sample_weight)
        with no_grad():
            y_pred = self(x, training=False)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        return self.compute_metrics(x, y, y_pred, sample_weight, loss)

    def predict_step(self, x):
        # The prepared plan (None where it does not apply) records nothing and enters no_grad
        # where it calls a layer, so the hot path skips the context manager (~1 us a call).
        out = inference.predict(self, x)
        if out is not None:
            return out
        with no_grad():
            return _array(self(x, training=False))

    # -- batch-level API (Keras) -------------------------------------------------------------
    def _batch_logs(self, logs, return_dict):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def train_on_batch(self, x, y=None, sample_weight=None, reset_metrics=True, return_dict=False):
        """One step; with reset_metrics (the default) the returned values are this batch's."""
        if reset_metrics:
            self.reset_metrics()
        return self._batch_logs(self.train_step(x, y, sample_weight), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, reset_metrics=True, return_dict=False):
        if reset_metrics:
            self.reset_metrics()
        return self._batch_logs(self.test_step(x, y, sample_weight), return_dict)

    def predict_on_batch(self, x):
        return self.predict_step(x)

    # -- loops (fastconv.training) -----------------------------------------------------------
    def fit(self, x=None, y=None, **kwargs):
        from .. import training
        return training.fit(self, x, y, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        from .. import training
        return training.evaluate(self, x, y, **kwargs)

    def predict(self, x, **kwargs):
        return _training().predict(self, x, **kwargs)

    # -- inspection and weights I/O ----------------------------------------------------------
    def get_layer(self, name=None, index=None):
        """A top-level layer by name or by index in `layers`."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r} in model {self.name!r}; layers: "
                         f"{[l.name for l in self.layers]}")

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print the Keras 3 table of layers, output shapes and parameter counts (engine/summary.py)."""
        from .summary import summary_text
        text = summary_text(self, line_length=line_length, positions=positions, expand_nested=expand_nested,
                            show_trainable=show_trainable, layer_range=layer_range)
        if print_fn is None:
            print(text, end="")
        else:
            print_fn(text)  # one call with the whole table, as Keras 3 does

    def save(self, filepath, overwrite=True, include_optimizer=True):
        """The whole model in one .keras file: architecture, weights, compile state and
        optimizer slots (fastconv.saving.model_file); load it with fastconv.models.load_model."""
        from ..saving.model_file import save_model
        save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def to_json(self, **kwargs):
        """The architecture as a JSON string (Keras's to_json; models.model_from_json reads it)."""
        import json
        from ..saving.serialization import serialize
        return json.dumps(serialize(self), **kwargs)

    def save_weights(self, filepath, overwrite=True):
        """Write every weight: `.weights.h5`/`.h5` in Keras 3's HDF5 layout (Keras loads it),
        anything else as fastconv's .npz."""
        from ..saving import save_weights
        save_weights(self, filepath, overwrite=overwrite)

    def export(self, filepath, format="onnx", verbose=None, opset=17, batch_size=None):
        """Write the model for inference elsewhere. format="onnx" (the only one; Keras's
        "tf_saved_model" needs TensorFlow): see fastconv.onnx.export. verbose: print where."""
        if format != "onnx":
            raise ValueError(f"export: format must be 'onnx' (TensorFlow SavedModel is not provided), got {format!r}")
        from .. import onnx
        proto = onnx.export(self, filepath, opset=opset, batch_size=batch_size)
        if verbose:
            print(f"Saved ONNX model (opset {opset}) of {self.name!r} to {filepath}")
        return proto

    def load_weights(self, filepath, by_name=False, skip_mismatch=False, strict=True):
        """Load a save_weights file, or a Keras HDF5 weights file (legacy application files and
        Keras 3 `.weights.h5`). strict (default): any missing, unexpected or wrongly shaped
        layer/key is an error listing them all and nothing is assigned; strict=False /
        skip_mismatch=True loads what matches. by_name (HDF5 only, as Keras): load the layers
        whose names match and leave the others."""
        from ..saving import load_weights
        return load_weights(self, filepath, strict=strict and not skip_mismatch, by_name=by_name)


def _chains(plan):
    seen = []
    for entry in plan.values():
        chain = entry[0] if isinstance(entry, tuple) else entry
        if chain is not None and not any(chain is c for c in seen):
            seen.append(chain)
    return seen
