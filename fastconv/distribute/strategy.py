"""Data-parallel strategies: one model replica per process, gradients averaged every step.

    strategy = fastconv.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build(...); model.compile(...)
    model.fit(x, y, batch_size=64)        # started with: mpiexec -n 4 python train.py

What fit does under a strategy (training/loop.py calls the hooks below):
- at its start, rank 0's weights and its "shuffle" stream are broadcast, so every replica
  starts equal and every rank draws the same permutation each epoch (sharding.py);
- `batch_size` is the global batch, split evenly over the ranks (a last batch with fewer
  samples than ranks is dropped everywhere); an iterable of batches is read by each rank as
  its own data, and must give every rank the same number of batches per epoch;
- each rank scales its loss by its share of the global batch, and the gradients are summed in
  buckets started during backward (buckets.py): the update equals one process training on the
  global batch, up to float32 summation order;
- the epoch's logs are averaged over the ranks weighted by their samples; only the chief
  (rank 0) shows the progress bar and runs the callbacks that write files (their
  `chief_only` hooks are skipped elsewhere);
- an uncaught exception on any rank aborts the whole job (MPI_Abort), and every collective
  gives up after `timeout` seconds with CollectiveTimeout: a failed rank never leaves the
  others hanging.

- `model.stop_training` is agreed after every batch and epoch (one 8-byte allreduce): a
  callback that stops one rank on rank-local state stops them all, never leaving a rank
  waiting in the next step's reduction.

evaluate, predict and fit's validation shard array data over the ranks and reduce exactly
(evaluation.py): evaluate's logs equal one process's on all the data, predict returns the
whole result, in input order, on every rank. BatchNormalization keeps local batch statistics
(as Keras); layers.SyncBatchNormalization reduces them.
"""
import contextlib
import copy
import json
import sys

import numpy as np

from . import context
from .buckets import GradientReducer, plan_buckets
from .communicator import MpiCommunicator


class MultiWorkerMirroredStrategy:
    """Data parallelism over MPI processes (mpiexec, srun), one replica per process.

    bucket_mb: gradient bucket size in MiB (25 by default, as PyTorch DDP).
    timeout: seconds any collective may wait before CollectiveTimeout (default 300).
    communication: "auto" (NCCL for the cuda backend, else MPI), "mpi" or "nccl".
    """

    def __init__(self, bucket_mb=25.0, timeout=300.0, communication="auto"):
        if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float)) or bucket_mb <= 0:
            raise ValueError(f"bucket_mb must be a positive number of MiB, got {bucket_mb!r}")
        if communication not in ("auto", "mpi", "nccl"):
            raise ValueError(f"communication must be 'auto', 'mpi' or 'nccl', got {communication!r}")
        from ..backend import get_backend
        self.communicator = MpiCommunicator(timeout)
        self.bucket_bytes = int(bucket_mb * 2 ** 20)
        use_nccl = communication == "nccl" or (communication == "auto" and get_backend() == "cuda")
        self.device_communicator = None
        if use_nccl:
            from .nccl import NcclCommunicator
            self.device_communicator = NcclCommunicator(self.communicator, self._local_device())
        self._plans = {}
        self._step_counts = None
        if self.num_replicas_in_sync > 1:
            _abort_on_uncaught_exception(self.communicator)

    def _local_device(self):
        return None

    # -- what a user reads ----------------------------------------------------------------------
    num_replicas_in_sync = property(lambda self: self.communicator.size)
    rank = property(lambda self: self.communicator.rank)
    is_chief = property(lambda self: self.communicator.rank == 0)

    @contextlib.contextmanager
    def scope(self):
        """Models compiled (and SyncBatchNormalization layers made) inside train with this strategy."""
        token = context.enter(self)
        try:
            yield self
        finally:
            context.leave(token)

    # -- collectives on arrays of either place ----------------------------------------------------
    def _comm_for(self, array):
        if self.device_communicator is not None and hasattr(array, "__cuda_array_interface__"):
            return self.device_communicator
        return self.communicator

    def allreduce_sum(self, array, what="allreduce"):
        return self._comm_for(array).allreduce_sum(array, what)

    # -- hooks for fit (training/loop.py) and the train step (engine/model.py) -----------------------
    def prepare_fit(self, model, x):
        """Same starting point on every rank: rank 0's weights and shuffle stream."""
        from .. import random as fr
        comm = self.communicator
        if not model.built and x is not None:
            from ..training.data import map_structure
            model(map_structure(lambda a: a[:1], x), training=False)  # build from one sample
        for v in model.weights:  # a Variable owns contiguous storage, written in place
            self._comm_for(v.data).broadcast(v.data, 0, f"the broadcast of {v.name}")
        state = json.dumps(fr.generator("shuffle").bit_generator.state).encode()
        fr.generator("shuffle").bit_generator.state = json.loads(comm.broadcast_bytes(state, 0, "the seed broadcast"))

    def shard(self, iterator, x):
        from ..training.data import is_array_data
        from .sharding import ShardedIterator
        return ShardedIterator(iterator, self, is_array_data(x))

    def backward(self, loss, variables):
        """loss.backward() with this rank's share of the global batch as the seed gradient, the
        buckets reduced while it runs; afterwards every .grad holds the global gradient."""
        from ..autograd import on_leaf_grad
        from ..functional import array_module
        local, total = self._step_counts or (1, self.num_replicas_in_sync)
        key = tuple(id(v) for v in variables)
        buckets = self._plans.get(key)
        if buckets is None:
            buckets = self._plans[key] = plan_buckets(variables, self.bucket_bytes)
        xp = array_module(variables[0].data) if variables else np
        comm = self._comm_for(variables[0].data) if variables else self.communicator
        dtype = variables[0].dtype if variables else np.float32
        reducer = GradientReducer(comm, variables, buckets, xp=xp, dtype=dtype)
        with on_leaf_grad(reducer.on_leaf):
            loss.backward(local / total)
        reducer.finish()

    def reduce_logs(self, logs, samples):
        """Epoch logs averaged over the ranks, weighted by each rank's samples."""
        keys = [k for k, v in logs.items() if isinstance(v, float)]
        vec = np.array([samples] + [logs[k] * samples for k in keys], np.float64)
        vec = self.communicator.allreduce_sum(vec, "the reduction of the logs")
        out = dict(logs)
        out.update({k: float(vec[i + 1] / vec[0]) for i, k in enumerate(keys)} if vec[0] > 0 else {})
        return out

    def agree_to_stop(self, stop):
        """True on every rank when any rank's `stop` is true."""
        flag = np.array([1 if stop else 0], np.int64)
        return bool(self.communicator.allreduce_sum(flag, "the stop_training agreement")[0])

    def chief_callbacks(self, callbacks):
        """On the chief, the callbacks unchanged; elsewhere, callbacks whose `chief_only` is
        True are left out and the hooks it names (a tuple) are skipped."""
        if self.is_chief or callbacks is None:
            return callbacks
        from ..callbacks import CallbackList
        if isinstance(callbacks, CallbackList):
            callbacks = callbacks.callbacks
        if not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]
        kept = []
        for cb in callbacks:
            only = getattr(cb, "chief_only", False)
            if only is True:
                continue
            if only:
                cb = copy.copy(cb)  # the same state, minus the writing hooks
                for hook in only:
                    setattr(cb, hook, _skip)
            kept.append(cb)
        return kept


def _skip(*args, **kwargs):
    return None


class MirroredStrategy(MultiWorkerMirroredStrategy):
    """One process per GPU on one host (launched by mpiexec like the multi-worker strategy):
    rank r uses the host's GPU (local rank mod the GPU count), gradients reduced over NCCL on
    the cuda backend, over MPI on the cpu backend."""

    def _local_device(self):
        import os
        for name in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"):
            if name in os.environ:
                return int(os.environ[name])
        return self.communicator.rank


_hooked = []


def _abort_on_uncaught_exception(comm):
    """An exception that ends one rank's script ends the job: without this the other ranks
    would wait in their next collective (until the timeout)."""
    if _hooked:
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        # The cause first, in one flushed line: another rank's abort may end this process
        # while the (longer) traceback is still being written.
        print(f"fastconv.distribute: rank {comm.rank} failed ({exc_type.__name__}: {exc}); aborting all "
              f"{comm.size} ranks", file=sys.stderr, flush=True)
        previous(exc_type, exc, tb)
        sys.stderr.flush()
        comm.abort(1)
    sys.excepthook = hook
    _hooked.append(hook)
