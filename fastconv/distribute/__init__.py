"""Data-parallel training over several processes and hosts (Keras's tf.distribute shape).

`MultiWorkerMirroredStrategy` (MPI through mpi4py) and `MirroredStrategy` (one process per
GPU, NCCL through CuPy on the cuda backend) share the machinery in strategy.py. mpi4py is
imported only when a strategy is made: `import fastconv` never needs MPI. Install with
`pip install "fastconv[mpi]"`, or build mpi4py against a cluster's own MPI.
"""
from .communicator import CollectiveTimeout
from .context import current_strategy


def __getattr__(name):
    if name in ("MultiWorkerMirroredStrategy", "MirroredStrategy"):
        from . import strategy
        return getattr(strategy, name)
    raise AttributeError(f"module 'fastconv.distribute' has no attribute {name!r}")


def get_strategy():
    """The strategy in scope, or None (Keras returns a default strategy; fastconv has none)."""
    return current_strategy()


__all__ = ["MultiWorkerMirroredStrategy", "MirroredStrategy", "CollectiveTimeout", "get_strategy"]
