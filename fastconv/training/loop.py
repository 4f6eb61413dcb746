"""fit / evaluate / predict for any model object with the Keras step interface:
`train_step(x, y[, sample_weight]) -> {name: value}`, `test_step(...)` likewise,
`predict_step(x) -> array (or a structure of arrays)`, and optionally `reset_metrics()`,
`metrics_names`, `optimizer`, `stop_training`.

The step dicts hold running values since the last `reset_metrics()` (Keras semantics); the
loop resets at each epoch start and before each evaluation, so an epoch's logs are the values
after its last batch.

Non-finite loss: fit stops (as Keras's TerminateOnNaN) after the batch that produced it, with
a RuntimeWarning naming the epoch and batch; that epoch (validation included) is still
logged, then callbacks' on_train_end run (EarlyStopping(restore_best_weights=True) can put
good weights back). It does not raise, so the History up to the failure is returned.

On the GPU (cuda backend) a step's values stay on the device: batch logs hold 0-d device
arrays, the progress bar reads them only when it redraws, and the epoch logs are read back
once at the epoch's end; a non-finite loss is noticed there and stops training after that
epoch. predict() gathers the outputs on the device and copies them back once.
"""
import contextlib
import math
import warnings

import numpy as np

from ..backend import get_backend
from ..cuda import to_host
from ..functional import array_module, array_of, is_device_array
from .data import make_iterator, map_structure, train_validation_split, is_array_data
from .threads import registered


def _verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, float):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def _count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _scalar(v):
    """A step value as a float; a GPU value stays a 0-d device array (read it later)."""
    if hasattr(v, "requires_grad") and hasattr(v, "data"):
        v = v.data
    if is_device_array(v):
        return v.reshape(()) if v.size == 1 else v
    try:
        return float(np.ravel(np.asarray(v))[0])
    except (TypeError, ValueError, IndexError):
        return v


def _logs(out):
    if isinstance(out, dict):
        return {k: _scalar(v) for k, v in out.items()}
    return {"loss": _scalar(out)}


def _host_logs(logs):
    """Logs with every device value read back (one wait for the GPU, at epoch end)."""
    return {k: float(v) if is_device_array(v) and v.size == 1 else v for k, v in logs.items()}


def _check_loss(model, logs, epoch, step):
    loss = logs.get("loss")
    if isinstance(loss, float) and not math.isfinite(loss):
        where = f"batch {step + 1}" if step is not None else "its end"
        warnings.warn(f"fit: the loss became {loss} at epoch {epoch + 1}, {where}; "
                      "training stopped (lower the learning rate or check the data)",
                      RuntimeWarning, stacklevel=3)
        model.stop_training = True


def _step(fn, xb, yb, swb):
    return _logs(fn(xb, yb) if swb is None else fn(xb, yb, swb))


def _reset(model):
    reset = getattr(model, "reset_metrics", None)
    if callable(reset):
        reset()


def _place(model):
    """On the cuda backend the model's weights live on the GPU (a no-op when they already do)."""
    if get_backend() == "cuda" and hasattr(model, "weights"):
        from .. import cuda
        cuda.model_to_device(model)


def _callback_list(model, callbacks, verbose, **params):
    from ..callbacks import CallbackList
    if callbacks is not None and not isinstance(callbacks, (list, tuple, CallbackList)):
        callbacks = [callbacks]
    if isinstance(callbacks, CallbackList):
        callbacks = callbacks.callbacks
    return CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=model,
                        verbose=verbose, **params)


def _validation_iterator(validation_data, batch_size, steps, strategy=None):
    if isinstance(validation_data, tuple) and 2 <= len(validation_data) <= 3 and is_array_data(validation_data[0]):
        arrays = tuple(validation_data) + (None,) * (3 - len(validation_data))
        arrays, batch_size = _evaluation_shard(strategy, arrays, batch_size, steps)
        return make_iterator(*arrays, batch_size=batch_size, steps=steps, name="validation_data")
    if isinstance(validation_data, tuple) and len(validation_data) not in (2, 3):
        raise ValueError(f"validation_data must be (x, y), (x, y, sample_weight) or an iterable of batches; "
                         f"got a tuple of {len(validation_data)} elements")
    return make_iterator(validation_data, batch_size=batch_size, steps=steps, name="validation_data")


@registered("fit")
def fit(model, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
        validation_split=0.0, validation_data=None, shuffle=True, sample_weight=None,
        initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None):
    """Train `model`; returns the History (history['loss'], metric keys, 'val_' keys).
    batch_size defaults to 32 for arrays and is ignored for iterables of batches.

    Threads: fit refuses (RuntimeError) to overlap another thread's fit, evaluate or predict
    on the same model, and they refuse to overlap it (training/threads.py)."""
    verbose = _verbose(verbose)
    _place(model)
    epochs, initial_epoch = _count("epochs", epochs, 0), _count("initial_epoch", initial_epoch, 0)
    if validation_split and validation_data is None:
        if not is_array_data(x):
            raise ValueError("validation_split needs array inputs; pass validation_data for iterables")
        (x, y, sample_weight), validation_data = train_validation_split((x, y, sample_weight), validation_split)
    train = make_iterator(x, y, sample_weight, batch_size, shuffle, steps_per_epoch)
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is not None:  # data parallel (fastconv/distribute): this rank's shard, chief-only output
        train = strategy.shard(train, x)
        verbose, callbacks = (verbose if strategy.is_chief else 0), strategy.chief_callbacks(callbacks)
    val = None
    if validation_data is not None:
        val = _validation_iterator(validation_data, validation_batch_size or batch_size, validation_steps, strategy)
    cbs = _callback_list(model, callbacks, verbose, epochs=epochs, steps=train.steps)
    model.stop_training = False
    cbs.on_train_begin()
    # A callback that restored an interrupted run (BackupAndRestore) says where it stopped.
    resumed = model.__dict__.pop("_resume_initial_epoch", None)
    if resumed is not None:
        initial_epoch = max(initial_epoch, resumed)
    if strategy is not None:
        strategy.prepare_fit(model, x)
    logs = {}
    for epoch in range(initial_epoch, epochs):
        _reset(model)
        cbs.on_epoch_begin(epoch)
        batch_logs = None
        for step, (xb, yb, swb) in enumerate(train):
            cbs.on_train_batch_begin(step)
            batch_logs = _step(model.train_step, xb, yb, swb)
            cbs.on_train_batch_end(step, batch_logs)
            if strategy is None:  # (with one, every rank checks the reduced epoch logs alike)
                _check_loss(model, batch_logs, epoch, step)  # host values only: no GPU wait
            else:  # a callback may stop one rank only: all stop, or none (no rank left waiting)
                model.stop_training = strategy.agree_to_stop(model.stop_training)
            if model.stop_training:
                break
        if batch_logs is None:
            if epoch == initial_epoch:
                raise ValueError("fit: the training data yielded no batches")
            warnings.warn(f"fit: the input ran out of data at epoch {epoch + 1}; training stopped "
                          "(a generator is consumed once: pass steps_per_epoch * epochs batches, "
                          "or a re-iterable object)", RuntimeWarning, stacklevel=2)
            break
        epoch_logs = _host_logs(batch_logs)
        if strategy is not None:
            epoch_logs = strategy.reduce_logs(epoch_logs, train.samples)
        if not model.stop_training:  # GPU values are first read here
            _check_loss(model, epoch_logs, epoch, None)
        if val is not None:
            val_logs = _evaluate_loop(model, val, cbs)
            epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
        cbs.on_epoch_end(epoch, epoch_logs)
        if strategy is not None:
            model.stop_training = strategy.agree_to_stop(model.stop_training)
        logs = epoch_logs
        if model.stop_training:
            break
        if train.exhausted:
            warnings.warn(f"fit: the input ran out of data during epoch {epoch + 1}; training stopped",
                          RuntimeWarning, stacklevel=2)
            break
    cbs.on_train_end(logs)
    return cbs.history


def _evaluate_loop(model, iterator, cbs):
    _reset(model)
    cbs.on_test_begin()
    logs, samples = None, 0
    for step, (xb, yb, swb) in enumerate(iterator):
        cbs.on_test_batch_begin(step)
        logs = _step(model.test_step, xb, yb, swb)
        samples += _batch_samples(xb)
        cbs.on_test_batch_end(step, logs)
    if logs is None:
        raise ValueError("evaluation data yielded no batches")
    logs = _host_logs(logs)
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is not None:  # each rank saw its shard: sum the metrics' states over the ranks
        logs = _reduce_evaluation(model, strategy, logs, samples)
    cbs.on_test_end(logs)
    return logs


def _evaluation_shard(strategy, arrays, batch_size, steps):
    """This rank's contiguous part of (x, y, sample_weight) and its local batch size under a
    strategy (fastconv/distribute/evaluation.py); the arguments unchanged otherwise."""
    if strategy is None:
        return arrays, batch_size
    from ..distribute.evaluation import shard_arrays
    part = shard_arrays(strategy, arrays, batch_size, steps)
    return (arrays, batch_size) if part is None else part


def _batch_samples(xb):
    from ..data.adapters import num_samples
    try:
        return num_samples(xb)
    except (TypeError, ValueError, IndexError):
        return 1


def _reduce_evaluation(model, strategy, logs, samples):
    from ..distribute.evaluation import reduce_metrics
    metrics = getattr(model, "metrics", None)
    if not isinstance(metrics, list) or sorted(m.name for m in metrics) != sorted(logs):
        metrics = []  # a duck-typed model: its logs averaged by samples
    return reduce_metrics(strategy, metrics, logs, samples)


@registered("evaluate")
def evaluate(model, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
             callbacks=None, return_dict=False):
    """Loss and metrics over the data: a dict with return_dict, else a list in
    `model.metrics_names` order (a bare float when there is only one value).

    Threads: calls on one model may run concurrently (with each other and with predict):
    each accumulates into its own copies of the metrics, and `model.metrics` then report the
    last call to finish, as in Keras. Overlapping another thread's fit raises RuntimeError."""
    verbose = _verbose(verbose)
    _place(model)
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is not None:  # this rank's shard, the chief's progress bar
        (x, y, sample_weight), batch_size = _evaluation_shard(strategy, (x, y, sample_weight), batch_size, steps)
        verbose, callbacks = (verbose if strategy.is_chief else 0), strategy.chief_callbacks(callbacks)
    it = make_iterator(x, y, sample_weight, batch_size, False, steps)
    cbs = _callback_list(model, callbacks, verbose, epochs=1, steps=it.steps)
    scope = getattr(model, "_metrics_scope", None)  # a duck-typed model may have none
    with scope() if scope is not None else contextlib.nullcontext():
        logs = _evaluate_loop(model, it, cbs)
    if return_dict:
        return logs
    names = list(getattr(model, "metrics_names", None) or [])
    if sorted(names) != sorted(logs):
        names = list(logs)
    values = [logs[k] for k in names]
    return values[0] if len(values) == 1 else values


def _concat(outputs):
    first = outputs[0]
    if isinstance(first, (list, tuple)):
        return type(first)(_concat([o[i] for o in outputs]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _concat([o[k] for o in outputs]) for k in first}
    return to_host(array_module(first).concatenate(outputs, axis=0))


def _one_quiet_batch(x, batch_size, verbose, steps, callbacks):
    return (verbose == 0 and steps is None and callbacks is None and type(x) is np.ndarray
            and x.dtype == np.float32 and x.ndim >= 1 and 0 < len(x) <= (32 if batch_size is None else batch_size)
            and get_backend() == "cpu" and (batch_size is None or type(batch_size) is int))


@registered("predict")
def predict(model, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
    """Outputs of `model.predict_step` over every batch, concatenated along the batch axis as
    numpy arrays (the same structure as one step's output). Batches of an iterable may be
    x or tuples whose first element is x.

    Threads: calls on one model may run concurrently (with each other and with evaluate);
    they share no state but the weights they read (a model's first call builds it under a
    lock). Overlapping another thread's fit raises RuntimeError."""
    verbose = _verbose(verbose)
    _place(model)
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        return _predict_sharded(model, strategy, x, batch_size, verbose, steps, callbacks)
    return _predict_local(model, x, batch_size, verbose, steps, callbacks)


def _predict_local(model, x, batch_size, verbose, steps, callbacks):
    if _one_quiet_batch(x, batch_size, verbose, steps, callbacks):
        # One host array that fits one batch, no progress bar, no callbacks: the batch is x
        # itself, so the iterator and callback machinery (~0.1 ms a call, as much as LeNet's
        # kernels at batch 1) would only copy it. Same step, same result.
        out = model.predict_step(x)
        if type(out) is np.ndarray:  # one array: its copy is what _concat returns, a fifth of the time
            return out.copy()
        return _concat([map_structure(array_of, out)])
    it = make_iterator(x, batch_size=batch_size, shuffle=False, steps=steps)
    cbs = _callback_list(model, callbacks, verbose, epochs=1, steps=it.steps)
    cbs.on_predict_begin()
    outputs = []
    for step, (xb, _, _) in enumerate(it):
        cbs.on_predict_batch_begin(step)
        out = map_structure(array_of, model.predict_step(xb))
        outputs.append(out)
        cbs.on_predict_batch_end(step, {"outputs": out})
    cbs.on_predict_end()
    if not outputs:
        raise ValueError("predict: the input yielded no batches")
    return _concat(outputs)


def _predict_sharded(model, strategy, x, batch_size, verbose, steps, callbacks):
    """Each rank predicts its shard; every rank returns the whole result in input order
    (Keras's behaviour under MultiWorkerMirroredStrategy). Data not sharded (fewer samples
    than ranks, steps=) is predicted whole on every rank."""
    from ..distribute.evaluation import gather_outputs, shard_arrays
    part = shard_arrays(strategy, (x, None, None), batch_size, steps)
    callbacks = strategy.chief_callbacks(callbacks)
    verbose = verbose if strategy.is_chief else 0
    if part is None and is_array_data(x):
        return _predict_local(model, x, batch_size, verbose, steps, callbacks)
    if part is not None:
        (x, _, _), batch_size = part
    return gather_outputs(strategy, _predict_local(model, x, batch_size, verbose, steps, callbacks))
