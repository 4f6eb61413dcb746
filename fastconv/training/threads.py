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


class loop_call:
    """Register a fit/evaluate/predict call on `model` for its duration (a context manager),
    or raise RuntimeError when it would overlap another thread's call in a way the module doc
    forbids. A class, not a generator: predict on one image is a few tens of microseconds and
    the generator's context manager cost 4 of them (3 times this)."""
    __slots__ = ("model", "kind", "key")

    def __init__(self, model, kind):
        self.model, self.kind = model, kind

    def __enter__(self):
        kind, me = self.kind, threading.get_ident()
        self.key = (kind, me)
        with _lock:
            calls = _calls.get(id(self.model))
            if calls is None:
                calls = _calls[id(self.model)] = {}
            elif calls:
                others = sorted({k for k, t in calls if t != me and (kind == "fit" or k == "fit")})
                if others:
                    _refuse(self.model, kind, others)
            calls[self.key] = calls.get(self.key, 0) + 1

    def __exit__(self, *exc):
        with _lock:
            calls = _calls[id(self.model)]
            calls[self.key] -= 1
            if not calls[self.key]:
                del calls[self.key]
            if not calls:  # no call left: forget the model (ids are reused)
                del _calls[id(self.model)]
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
            with loop_call(model, kind):
                return fn(model, *args, **kwargs)
        return run
    return wrap
