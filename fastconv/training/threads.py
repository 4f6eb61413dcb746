"""Which loop calls may share one model across threads.

evaluate and predict may run concurrently with each other: they only read the weights, and
evaluate keeps its metric state per call (Model._metrics_scope). fit may not overlap any
other thread's fit, evaluate or predict on the same model: it changes the weights (and BN's
moving statistics, the optimizer's slots and the model's own metrics) while the other call
reads them, so that call's results would belong to no single set of weights. Those
overlaps raise RuntimeError instead. Calls from the fitting thread itself (fit's validation,
a callback that evaluates or predicts) are fine.
"""
import contextlib
import functools
import threading
from collections import Counter

_lock = threading.Lock()
_calls = {}  # id(model) -> Counter {(kind, thread id): calls in flight}


@contextlib.contextmanager
def loop_call(model, kind):
    """Register a fit/evaluate/predict call on `model` for its duration, or raise
    RuntimeError when it would overlap another thread's call in a way the module doc forbids."""
    me = threading.get_ident()
    key = (kind, me)
    with _lock:
        calls = _calls.setdefault(id(model), Counter())
        others = sorted({k for k, t in calls if t != me and (kind == "fit" or k == "fit")})
        if others:
            name = getattr(model, "name", type(model).__name__)
            if kind == "fit":
                raise RuntimeError(f"model {name!r}: fit cannot start while {' and '.join(others)} runs on it in "
                                   "another thread (fit changes the weights that call reads); wait for it to end")
            raise RuntimeError(f"model {name!r}: {kind} cannot start while fit runs on it in another thread "
                               "(its weights change under the call); evaluate and predict may run concurrently "
                               "with each other, not with fit")
        calls[key] += 1
    try:
        yield
    finally:
        with _lock:
            calls[key] -= 1
            if not calls[key]:
                del calls[key]
            if not calls:  # no call left: forget the model (ids are reused)
                del _calls[id(model)]


def registered(kind):
    """Decorator: run a loop function fn(model, ...) as a `kind` call under loop_call."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(model, *args, **kwargs):
            with loop_call(model, kind):
                return fn(model, *args, **kwargs)
        return run
    return wrap
