"""Optimizer base: gradient clipping, learning-rate schedules, decoupled weight decay, lazily
created per-variable state, and in-place updates.

A variable is anything with a `.data` array (numpy, or cupy later) and ideally a `.name`;
`apply_gradients` updates `var.data` IN PLACE (the same array object), so layers and the
autograd graph keep seeing the new values. Subclasses implement
`_update(var, grad, state, lr, step)`; `state` is the dict of slot arrays returned by
`_build_state(var)` the first time the variable is seen, and `step` is the 1-based count of
this update (Keras's local_step, used for bias correction).

Keras 3 semantics: the schedule sees `iterations` before the increment (first step is 0);
only one of clipnorm / clipvalue / global_clipnorm may be set; weight decay
`w -= lr * weight_decay * w` is applied before the update.
"""
import warnings

import numpy as np

from ..backend import get_backend, kernels
from ..functional import array_module, is_device_array
from ..saving import serialization as _serialization
from .schedules import LearningRateSchedule


def _check_optional_positive(name, value):
    if value is not None and not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")


class Optimizer(_serialization.RecordsArguments):
    def __init__(self, learning_rate, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 weight_decay=None, name=None, lr=None, decay=None):
        # Keras 2 spellings, still common in ported scripts: `lr` is `learning_rate`; `decay`
        # is Keras 2's inverse-time decay, lr_t = lr / (1 + decay * iterations).
        if lr is not None:
            warnings.warn("lr= is the Keras 2 name; use learning_rate=", DeprecationWarning, stacklevel=3)
            learning_rate = lr
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or decay < 0):
            raise ValueError(f"decay must be a float >= 0, got {decay!r}")
        if decay:
            warnings.warn("decay= is the Keras 2 argument; use learning_rate=optimizers.schedules."
                          "InverseTimeDecay(lr, decay_steps=1, decay_rate=decay)",
                          DeprecationWarning, stacklevel=3)
        self.decay = float(decay or 0.0)
        for arg, val in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            _check_optional_positive(arg, val)
        if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("only one of clipnorm, clipvalue and global_clipnorm can be set, got "
                             f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")
        if weight_decay is not None and not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0 or None, got {weight_decay!r}")
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.weight_decay = weight_decay
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._learning_rate = self._check_lr(learning_rate)
        self._state = {}  # id(var) -> (var, slots); the var is kept so its id cannot be reused

    # -- learning rate ------------------------------------------------------------------------
    @staticmethod
    def _check_lr(value):
        if isinstance(value, LearningRateSchedule) or callable(value):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not value >= 0:
            raise ValueError(f"learning_rate must be a float >= 0 or a schedule, got {value!r}")
        return float(value)

    @property
    def learning_rate(self):
        """The current learning rate as a float (a schedule is evaluated at `iterations`)."""
        return self._current_lr()

    @learning_rate.setter
    def learning_rate(self, value):
        value = self._check_lr(value)
        if callable(self._learning_rate) and not callable(value):
            # Keras refuses too: a float would silently discard the schedule.
            raise TypeError("this optimizer was created with a learning-rate schedule, so its "
                            "learning rate cannot be set to a float; assign a new schedule instead")
        self._learning_rate = value

    def _current_lr(self):
        lr = self._learning_rate
        return float(lr(self.iterations)) if callable(lr) else lr

    # -- state --------------------------------------------------------------------------------
    def _build_state(self, var):
        return {}

    def get_state(self, var):
        """The slot arrays of `var` (empty dict before its first update)."""
        entry = self._state.get(id(var))
        return {} if entry is None else entry[1]

    @property
    def variables(self):
        return [v for v, _ in self._state.values()]

    # -- state as data (for files) -------------------------------------------------------------
    # Slots are keyed in memory by id(variable), which means nothing in another process; these
    # two methods name them by the caller's variable names (weight paths) instead, as plain
    # arrays, so training state can be saved and resumed without pickling objects.
    def state_arrays(self, named_variables):
        """{"iterations": 0-d int64, "<name>/<slot>": host array for every slot} where
        `named_variables` is {name: variable} (e.g. fastconv.saving.weight_paths(model))."""
        names = {id(v): k for k, v in named_variables.items()}
        out = {"iterations": np.asarray(self.iterations, np.int64)}
        for key, (var, slots) in self._state.items():
            if key not in names:
                raise ValueError(f"the optimizer holds state for variable {getattr(var, 'name', '?')!r}, "
                                 "which is not among the named variables")
            for slot, a in slots.items():
                out[f"{names[key]}/{slot}"] = a.get() if is_device_array(a) else np.array(a)
        return out

    def load_state_arrays(self, named_variables, arrays):
        """Restore what `state_arrays` returned, onto the variables of `named_variables`. Every
        array is checked (names, slots, shapes, dtypes) before anything changes; a mismatch is a
        ValueError listing the problems."""
        problems, given = [], {}
        for key, a in arrays.items():
            if key == "iterations":
                continue
            name, _, slot = key.rpartition("/")
            if name not in named_variables:
                problems.append(f"{key}: no variable named {name!r}")
            else:
                given.setdefault(name, {})[slot] = np.asarray(a)
        iterations = np.asarray(arrays.get("iterations", -1))
        if iterations.shape != () or iterations.dtype.kind not in "iu" or iterations < 0:
            problems.append(f"iterations must be a non-negative integer, got {arrays.get('iterations')!r}")
        state = {}
        for name, var in named_variables.items():
            if name not in given:
                continue  # never updated yet (or an optimizer without slots)
            slots = self._build_state(var)
            if set(slots) != set(given[name]):
                problems.append(f"{name}: slots {sorted(given[name])}, expected {sorted(slots)}")
                continue
            for slot, a in given[name].items():
                want = slots[slot]
                if a.shape != tuple(want.shape) or not np.can_cast(a.dtype, want.dtype, "same_kind"):
                    problems.append(f"{name}/{slot}: {a.dtype}{list(a.shape)}, expected "
                                    f"{want.dtype}{list(want.shape)}")
            state[name] = (var, slots)
        if problems:
            raise ValueError(f"cannot restore {type(self).__name__} state: " + "; ".join(problems))
        for name, (var, slots) in state.items():
            for slot, target in slots.items():
                target[...] = array_module(target).asarray(given[name][slot].astype(target.dtype))
        self._state = {id(var): (var, slots) for var, slots in state.values()}
        self.iterations = int(iterations)

    # -- clipping -----------------------------------------------------------------------------
    def _clip(self, grads):
        # Scales are computed where the gradients live, so clipping never reads back to the host.
        if self.clipnorm is not None:
            return [g * _clip_scale(_norm(g), self.clipnorm) for g in grads]
        if self.global_clipnorm is not None and grads:
            total = array_module(grads[0]).sqrt(sum(_norm(g) ** 2 for g in grads))
            scale = _clip_scale(total, self.global_clipnorm)
            return [g * scale for g in grads]
        if self.clipvalue is not None:
            return [g.clip(-self.clipvalue, self.clipvalue) for g in grads]
        return grads

    # -- updates ------------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """Apply one step to every (gradient, variable) pair; pairs with a None gradient are
        skipped (with a warning). Increments `iterations` once per call."""
        pairs = list(grads_and_vars)
        grads, variables = [], []
        for i, pair in enumerate(pairs):
            try:
                g, v = pair
            except (TypeError, ValueError):
                raise TypeError(f"grads_and_vars must hold (gradient, variable) pairs; item {i} is {pair!r}") from None
            if not hasattr(v, "data"):
                raise TypeError(f"item {i}: variable must have a .data array, got {type(v).__name__}")
            if g is None:
                warnings.warn(f"no gradient for variable {getattr(v, 'name', i)!r}; it is not updated")
                continue
            g = _as_like(g, v.data, getattr(v, "name", i))
            if g.shape != v.data.shape:
                raise ValueError(f"gradient for variable {getattr(v, 'name', i)!r} has shape {g.shape}, "
                                 f"expected the variable's shape {v.data.shape}")
            grads.append(g)
            variables.append(v)
        grads = self._clip(grads)
        lr = self._current_lr()
        if self.decay:
            # Applied here, not in `learning_rate`, which stays the undecayed base rate (as
            # Keras 2's `optimizer.lr`), so callbacks that read and set it do not compound it.
            lr = lr / (1.0 + self.decay * self.iterations)
        step = self.iterations + 1
        for g, v in zip(grads, variables):
            entry = self._state.get(id(v))
            if entry is None:
                entry = self._state[id(v)] = (v, self._build_state(v))
            decay = lr * self.weight_decay if self.weight_decay else 0.0
            kernels = self._fused_kernels(v.data, g, entry[1])
            if kernels is not None:
                self._fused_update(kernels, v.data, g, entry[1], lr, step, decay)
                continue
            if decay:
                v.data -= v.data * decay
            self._update(v, g, entry[1], lr, step)
        self.iterations += 1
        return self.iterations

    def apply(self, grads, variables):
        """Keras 3 spelling: `apply(grads, trainable_variables)`."""
        grads, variables = list(grads), list(variables)
        if len(grads) != len(variables):
            raise ValueError(f"got {len(grads)} gradients for {len(variables)} variables")
        return self.apply_gradients(zip(grads, variables))

    def _update(self, var, grad, state, lr, step):
        raise NotImplementedError

    # Subclasses with a fused kernel (fastconv._C.*_update; fastconv.cuda's of the same name
    # and signature) name the backends that have it and implement
    # _fused_update(kernels, w, grad, state, lr, step, decay): the decay w -= w * decay and the
    # step in one in-place pass on float32 C-contiguous arrays (_fusable).
    _fused_backends = ()

    def _fused_update(self, kernels, w, grad, state, lr, step, decay):
        raise NotImplementedError

    def _fused_kernels(self, w, grad, state):
        """The kernel module to run this update fused, or None for the array formulas."""
        backend = get_backend()
        if backend not in self._fused_backends or not _fusable(w, grad, state, backend):
            return None
        return kernels()

    # -- config -------------------------------------------------------------------------------
    def get_config(self):
        """The constructor's arguments (momentum, betas, ...) with the current learning rate
        (callbacks may have changed it) and the Keras 2 `lr` folded into it."""
        config = _serialization.arguments_config(self)
        config.pop("lr", None)
        lr = _serialization.serialize_value(self._learning_rate, "learning_rate")
        config.update(name=self.name, learning_rate=lr,
                      clipnorm=self.clipnorm, clipvalue=self.clipvalue, global_clipnorm=self.global_clipnorm,
                      weight_decay=self.weight_decay)
        config.pop("decay", None)
        if self.decay:
            config["decay"] = self.decay
        return config

    @classmethod
    def from_config(cls, config):
        return _serialization.from_config_arguments(cls, config)

    def __repr__(self):
        return f"{type(self).__name__}(learning_rate={self._learning_rate!r})"


def _fusable(w, grad, state, backend):
    """Whether a fused update applies: the parameter, gradient and every slot are float32
    C-contiguous arrays of the backend (NumPy arrays on cpu, the parameter and slots
    writeable; device arrays on cuda). Anything else (float64, views, arrays of the other
    kind) keeps the array formulas."""
    arrays = [w, grad] + list(state.values())
    on_device = backend == "cuda"
    for a in arrays:
        if is_device_array(a) != on_device or a.dtype != np.float32 or not a.flags.c_contiguous:
            return False
    return on_device or all(a.flags.writeable for a in [w] + list(state.values()))


def _norm(g):
    """The L2 norm as a 0-d array where g lives (no host read on the GPU)."""
    return array_module(g).sqrt((g.astype(np.float64) ** 2).sum())


def _clip_scale(norm, limit):
    """limit / max(norm, limit), in the gradients' float type."""
    return (limit / array_module(norm).maximum(norm, limit)).astype(np.float32)


def _as_like(g, like, name):
    """The gradient as an array of the variable's dtype and kind (copying only when needed)."""
    data = getattr(g, "data", g) if not isinstance(g, np.ndarray) and hasattr(g, "requires_grad") else g
    if is_device_array(like):
        if not is_device_array(data):
            raise TypeError(f"variable {name!r} is on the GPU but its gradient is a "
                            f"{type(data).__name__}; pass device gradients")
        return data.astype(like.dtype, copy=False)
    if is_device_array(data):
        raise TypeError(f"variable {name!r} is a host array but its gradient is on the GPU: move "
                        "the model with fastconv.cuda.model_to_device(model) before training")
    return np.asarray(data, dtype=like.dtype)
