"""Keras-style callbacks. The loop calls every hook of the `Callback` base; callbacks see the
model through `self.model` and use only: `model.stop_training`, `model.optimizer.learning_rate`
(float, settable), `model.get_weights()` / `set_weights()` and `model.save_weights(path)`
(`model.save(path)` when ModelCheckpoint is asked for whole models and the model has one).
"""
import csv
import io
import math
import os
import sys
import warnings

import numpy as np

from .saving.atomic import atomic_write
from .saving import serialization as _serialization
from .training.progbar import Progbar


class Callback(_serialization.RecordsArguments):
    # Data-parallel training (fastconv.distribute): True leaves the callback out on every rank
    # but the chief; a tuple of hook names skips just those (the ones that write files).
    chief_only = False

    def __init__(self):
        self.model = None
        self.params = {}

    def get_config(self):
        """The constructor's arguments (a callback given a Python function cannot be saved)."""
        return _serialization.arguments_config(self)

    @classmethod
    def from_config(cls, config):
        return _serialization.from_config_arguments(cls, config)

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): self.on_batch_begin(batch, logs)
    def on_train_batch_end(self, batch, logs=None): self.on_batch_end(batch, logs)
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass

    # Keras 2 names of the train-batch hooks, still called by the defaults above.
    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


_HOOKS = [n for n in vars(Callback) if n.startswith("on_") and n not in ("on_batch_begin", "on_batch_end")]


class CallbackList(Callback):
    """Calls a hook on every callback in order; optionally adds History and ProgbarLogger."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        super().__init__()
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        if add_history and not any(isinstance(c, History) for c in self.callbacks):
            self.callbacks.append(History())
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    @property
    def history(self):
        return next((c for c in self.callbacks if isinstance(c, History)), None)

    def set_model(self, model):
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def __iter__(self):
        return iter(self.callbacks)



def _make_dispatch(hook):
    def method(self, *args, **kwargs):
        for cb in self.callbacks:
            getattr(cb, hook)(*args, **kwargs)
    method.__name__ = hook
    return method


for _hook in _HOOKS:
    setattr(CallbackList, _hook, _make_dispatch(_hook))


class History(Callback):
    """Records the epoch logs: `history` maps each key to its per-epoch values, `epoch` lists
    the epoch indices. `fit` returns it."""

    def __init__(self):
        super().__init__()
        self.history, self.epoch = {}, []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        if self.model is not None:
            try:
                self.model.history = self
            except AttributeError:
                pass


class ProgbarLogger(Callback):
    """Prints progress: verbose 1 a bar (redrawn in place on a terminal, one line per epoch
    otherwise), verbose 2 one line per epoch. Reads verbose/epochs/steps from params."""

    def __init__(self, count_mode="steps", stateful_metrics=None, stream=None):
        # count_mode / stateful_metrics: Keras 2's arguments, accepted so its scripts run; the
        # bar always counts steps and shows the running values fit reports.
        if count_mode not in ("steps", "samples"):
            raise ValueError(f"count_mode must be 'steps' or 'samples', got {count_mode!r}")
        super().__init__()
        self.stream = stream
        self._bar, self._in_fit, self._seen = None, False, 0

    def _verbose(self):
        return self.params.get("verbose", 1)

    def _new_bar(self, target):
        self._seen = 0
        self._bar = Progbar(target, verbose=self._verbose(), stream=self.stream or sys.stdout)

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs", 1)
        if self._verbose() and epochs > 1:
            (self.stream or sys.stdout).write(f"Epoch {epoch + 1}/{epochs}\n")
        self._new_bar(self.params.get("steps"))

    def on_train_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self._bar.update(self._seen, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._bar.update(self._seen, logs, finalize=True)

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._new_bar(self.params.get("steps"))

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._seen = batch + 1
            self._bar.update(self._seen, logs)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._bar.update(self._seen, logs, finalize=True)

    def on_predict_begin(self, logs=None):
        self._new_bar(self.params.get("steps"))

    def on_predict_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self._bar.update(self._seen)

    def on_predict_end(self, logs=None):
        self._bar.update(self._seen, finalize=True)


def _monitor_op(mode, monitor, owner):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        # Keras: quantities named like accuracy/AUC improve upwards, everything else down.
        name = monitor.lower()
        mode = "max" if ("acc" in name or "auc" in name) and not name.endswith("loss") else "min"
    return mode


def _missing(owner, monitor, logs):
    warnings.warn(f"{owner}: metric {monitor!r} is not in the logs; available: {sorted(logs or {})}",
                  RuntimeWarning, stacklevel=3)


def checkpoint_extensions(save_weights_only):
    """The file endings ModelCheckpoint can honour. Weights (model.save_weights): fastconv's
    .npz or Keras's HDF5 (.weights.h5, .h5, .hdf5). Whole models (model.save): .keras, or a name
    that itself says weights (.npz, .weights.h5), which then gets the weights it names; never a
    plain ".h5" there, because Keras 2 wrote whole models under that name."""
    weights = (".npz", ".weights.h5", ".h5", ".hdf5")
    return weights if save_weights_only else (".keras", ".npz", ".weights.h5")


def check_checkpoint_path(filepath, save_weights_only):
    accepted = checkpoint_extensions(save_weights_only)
    if not filepath.endswith(accepted):
        what = "weights (save_weights_only=True)" if save_weights_only else "whole models (save_weights_only=False)"
        raise ValueError(f"ModelCheckpoint: filepath {filepath!r} has an extension fastconv cannot write "
                         f"{what} to; use one of {list(accepted)}")


class ModelCheckpoint(Callback):
    """Saves after each epoch to `filepath.format(epoch=epoch + 1, **logs)` (e.g.
    'm-{epoch:02d}-{val_loss:.2f}.keras'). With save_best_only, only when `monitor` improves
    on the best seen (strictly; no min_delta, as Keras). save_weights_only: `model.save_weights`
    (a .npz path); otherwise the whole model, `model.save` (a .keras path; a weights path such
    as .npz gets the weights). A path whose extension fastconv cannot honour raises at
    construction, not after the first epoch (checkpoint_extensions)."""

    chief_only = True  # writes files: only rank 0 under a distribution strategy

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", initial_value_threshold=None):
        super().__init__()
        self.filepath, self.monitor, self.verbose = os.fspath(filepath), monitor, verbose
        check_checkpoint_path(self.filepath, save_weights_only)
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.mode = _monitor_op(mode, monitor, "ModelCheckpoint")
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        else:
            self.best = math.inf if self.mode == "min" else -math.inf

    def _better(self, current):
        return current < self.best if self.mode == "min" else current > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as e:
            raise KeyError(f"ModelCheckpoint: filepath {self.filepath!r} names {e} which is not in the "
                           f"logs; available: {sorted(logs)}") from None
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                _missing("ModelCheckpoint", self.monitor, logs)
                return
            if not self._better(current):
                if self.verbose:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        self._save(path)

    def _save(self, path):
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if not self.save_weights_only and path.endswith(".keras"):
            self.model.save(path)
        else:
            self.model.save_weights(path)


class EarlyStopping(Callback):
    """Stops training when `monitor` has not improved by more than min_delta for `patience`
    epochs (epochs before start_from_epoch are ignored). restore_best_weights: at the end of
    training the weights of the best epoch are put back (Keras 3: also when training ran to
    the end without stopping)."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, patience, verbose
        self.min_delta = abs(min_delta)
        self.mode = _monitor_op(mode, monitor, "EarlyStopping")
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = start_from_epoch

    def _improves(self, current, reference):
        if reference is None:
            return True
        if self.mode == "min":
            return current + self.min_delta < reference
        return current - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best, self.best_weights, self.best_epoch = 0, 0, None, None, 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            _missing("EarlyStopping", self.monitor, logs)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


def _set_lr(model, value):
    opt = getattr(model, "optimizer", None)
    if opt is None or not hasattr(opt, "learning_rate"):
        raise ValueError("this callback needs model.optimizer with a learning_rate (compile the model first)")
    opt.learning_rate = float(value)


class LearningRateScheduler(Callback):
    """At each epoch start sets the learning rate to `schedule(epoch, lr)` (or
    `schedule(epoch)` for a one-argument function); logs it as 'learning_rate'."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.model.optimizer.learning_rate)
        try:
            lr = self.schedule(epoch, lr)
        except TypeError:
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, int, np.floating, np.integer)):
            raise ValueError(f"LearningRateScheduler: schedule must return a float, got {lr!r}")
        _set_lr(self.model, lr)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` (not below min_lr) after `patience` epochs
    without an improvement larger than min_delta, then waits `cooldown` epochs."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support factor >= 1.0, got {factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, float(factor), patience, verbose
        self.mode = _monitor_op(mode, monitor, "ReduceLROnPlateau")
        self.min_delta, self.cooldown, self.min_lr = abs(min_delta), cooldown, float(min_lr)
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = self.cooldown_counter = 0

    def _better(self, current):
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        lr = float(self.model.optimizer.learning_rate)
        logs["learning_rate"] = lr
        current = logs.get(self.monitor)
        if current is None:
            _missing("ReduceLROnPlateau", self.monitor, logs)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(current):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and lr > self.min_lr:
                new_lr = max(lr * self.factor, self.min_lr)
                _set_lr(self.model, new_lr)
                if self.verbose:
                    print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                self.cooldown_counter, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Writes one row per epoch: 'epoch' then the log keys in sorted order. append=True adds
    to an existing file without repeating its header. The file is rewritten whole (atomically)
    after every epoch, so an interrupted run leaves a complete file, never half a row."""

    chief_only = True  # writes files: only rank 0 under a distribution strategy

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.sep, self.append = os.fspath(filename), separator, append
        self._text, self._keys = None, None

    def on_train_begin(self, logs=None):
        self._text = ""
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                self._text = f.read()
        self._write_header = not self._text
        self._keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        rows = io.StringIO()
        writer = csv.writer(rows, delimiter=self.sep)
        if self._keys is None:
            self._keys = sorted(logs)
            if self._write_header:
                writer.writerow(["epoch"] + self._keys)
        writer.writerow([epoch] + [logs.get(k, "NA") for k in self._keys])
        self._text += rows.getvalue()
        with atomic_write(self.filename, "w", newline="") as f:
            f.write(self._text)

    def on_train_end(self, logs=None):
        self._text = None


class TerminateOnNaN(Callback):
    """Stops training as soon as a batch reports a NaN or infinite loss."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions, Keras's signatures: on_epoch_begin(epoch, logs),
    on_epoch_end(epoch, logs), on_batch_begin(batch, logs), on_batch_end(batch, logs),
    on_train_begin(logs), on_train_end(logs); any other hook by its name as a keyword
    (e.g. on_test_end=...). Hooks not given do nothing."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_begin=None, on_batch_end=None,
                 on_train_begin=None, on_train_end=None, **kwargs):
        super().__init__()
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_batch_begin=on_batch_begin,
                     on_batch_end=on_batch_end, on_train_begin=on_train_begin, on_train_end=on_train_end,
                     **kwargs)
        for hook, fn in given.items():
            if hook not in _HOOKS and hook not in ("on_batch_begin", "on_batch_end"):
                raise TypeError(f"LambdaCallback: unknown hook {hook!r}")
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"LambdaCallback: {hook} must be callable, got {fn!r}")
                # An instance attribute shadows the class's no-op method for this hook only.
                setattr(self, hook, _with_logs(fn, hook))


def _with_logs(fn, hook):
    """`fn` called as Keras calls it: (index, logs) for epoch/batch hooks, (logs) otherwise,
    with logs always passed (the loop omits it when there are none)."""
    if "epoch" in hook or "batch" in hook:
        def call(index, logs=None):
            return fn(index, logs)
    else:
        def call(logs=None):
            return fn(logs)
    return call


# Callbacks in modules of their own (bigger, or with optional dependencies); imported last
# because they subclass Callback.
from .callback_backup import BackupAndRestore  # noqa: E402,F401
from .callback_tensorboard import TensorBoard  # noqa: E402,F401
