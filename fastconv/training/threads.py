"""Which loop calls may share one model across threads.

evaluate and predict may run concurrently with each other: they only read the weights, and
evaluate keeps its metric state per call (Model._metrics_scope). fit may not overlap any
other thread's fit, evaluate or predict on the same model: it changes the weights (and BN's
moving statistics, the optimizer's slots and the model's own metrics) while the other call
reads them, so that call's results would belong to no single set of weights. Those
overlaps raise RuntimeError instead. Calls from the fitting thread itself (fit's validation,
a callback that evaluates or predicts) are fine.
"""
import functools
import threading

_lock = threading.Lock()
_calls = {}  # id(model) -> {(kind, thread id): calls in flight}


def _enter(model, kind):
    """Register a `kind` call on `model` by this thread; returns the key for _leave. Raises
    RuntimeError when it would overlap another thread's call in a way the module doc forbids."""
    me = threading.get_ident()
    key = (kind, me)
    with _lock:
        calls = _calls.get(id(model))
        if calls is None:
            _calls[id(model)] = {key: 1}
            return key
        if calls:
            others = sorted({k for k, t in calls if t != me and (kind == "fit" or k == "fit")})
            if others:
                _refuse(model, kind, others)
        calls[key] = calls.get(key, 0) + 1
    return key


def _leave(model, key):
    with _lock:
        calls = _calls[id(model)]
        calls[key] -= 1
        if not calls[key]:
            del calls[key]
        if not calls:  # no call left: forget the model (ids are reused)
            del _calls[id(model)]


class loop_call:
    """Register a fit/evaluate/predict call on `model` for its duration (a context manager),
    or raise RuntimeError when it would overlap another thread's call in a way the module doc
    forbids. Functions, not a generator's context manager: predict on one image takes a few
    tens of microseconds, and that context manager cost 4 of them."""
    __slots__ = ("model", "kind", "key")

    def __init__(self, model, kind):
        self.model, self.kind = model, kind

    def __enter__(self):
        self.key = _enter(self.model, self.kind)

    def __exit__(self, *exc):
        _leave(self.model, self.key)
        return False


def _refuse(model, kind, others):
    name = getattr(model, "name", type(model).__name__)
    if kind == "fit":
        raise RuntimeError(f"model {name!r}: fit cannot start while {' and '.join(others)} runs on it in "
                           "another thread (fit changes the weights that call reads); wait for it to end")
    raise RuntimeError(f"model {name!r}: {kind} cannot start while fit runs on it in another thread "
                       "(its weights change under the call); evaluate and predict may run concurrently "
                       "with each other, not with fit")


def registered(kind):
    """Decorator: run a loop function fn(model, ...) as a `kind` call under loop_call."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(model, *args, **kwargs):
            key = _enter(model, kind)  # loop_call's work without its object
            try:
                return fn(model, *args, **kwargs)
            finally:
                _leave(model, key)
        return run
    return wrap
