"""Which strategy is in scope. No MPI here: layers and the engine import this module, and
`import fastconv` must never need mpi4py."""
import contextvars

_in_scope = contextvars.ContextVar("fastconv_strategy_scope", default=None)


def current_strategy():
    """The strategy whose `scope()` is active in this thread, or None."""
    return _in_scope.get()


def enter(strategy):
    return _in_scope.set(strategy)


def leave(token):
    _in_scope.reset(token)
