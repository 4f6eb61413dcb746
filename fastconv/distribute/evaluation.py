"""evaluate / predict / validation under a strategy (training/loop.py calls these).

Array data is cut into N disjoint contiguous shards (np.array_split's parts: sizes differ by
at most one, so the last partial batch is simply the end of the last ranks' shards); each rank
runs its shard in batches of ceil(batch_size / N), batch_size being the global batch as in fit.
Evaluation batches need no collective, so ranks may run different numbers of them.

evaluate: the loss tracker and every metric keep sums and counts (Metric.total/count, the
confusion counts of Precision/Recall/AUC); these states are summed over the ranks and the
results read from the sums, so the logs equal one process's evaluate on all the data up to
float64 summation order. A metric with any other state is averaged by samples instead.

predict: Keras's behaviour under MultiWorkerMirroredStrategy: every rank returns the full
result, in input order (rank 0's shard first), gathered by an allgather.

Not sharded (every rank runs all the data): fewer samples than ranks, or a `steps=` cap.
evaluate still sums the states, which leaves the means unchanged (N times the sums, N times
the counts). Iterables of batches are read as each rank's own data (fit's rule): evaluate
sums them, predict gathers them in rank order; a rank whose iterable yields no batch raises.
"""
import math

import numpy as np

from ..cuda import to_host
from ..data.adapters import is_array_data, map_structure, num_samples

ADDITIVE_STATES = ("total", "count", "true_positives", "false_positives", "true_negatives",
                   "false_negatives")


def shard_arrays(strategy, arrays, batch_size, steps):
    """(this rank's part of `arrays` (a tuple x, y, sample_weight), its local batch size), or
    None when the data is not to be sharded (see the module doc)."""
    n_ranks = strategy.num_replicas_in_sync
    if n_ranks == 1 or steps is not None or not is_array_data(arrays[0]):
        return None
    n = num_samples(arrays[0])
    if n < n_ranks:
        return None
    base, extra = divmod(n, n_ranks)
    start = strategy.rank * base + min(strategy.rank, extra)
    stop = start + base + (strategy.rank < extra)
    part = tuple(None if a is None else map_structure(lambda v: v[start:stop], a) for a in arrays)
    if batch_size is None:
        batch_size = 32
    if isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool) and batch_size > 0:
        batch_size = math.ceil(batch_size / n_ranks)  # else make_iterator names the bad value
    return part, batch_size


def _metric_parts(metric):
    """The metric objects holding additive state (an 'accuracy' delegates to its _impl)."""
    impl = getattr(metric, "_impl", None)
    return _metric_parts(impl) if impl is not None else [metric]


def _states(metric):
    names = [k for k in ADDITIVE_STATES if getattr(metric, k, None) is not None]
    return names if {"total", "count"} <= set(names) or "true_positives" in names else None


def reduce_metrics(strategy, metrics, logs, samples):
    """Sum every metric's state over the ranks (in place) and return the logs read from the
    sums; `logs` (this rank's) and `samples` serve the metrics of unknown state."""
    parts, layout, others = [], [], []
    for m in metrics:
        for part in _metric_parts(m):
            names = _states(part)
            if names is None:
                others.append(m.name)
                continue
            for k in names:
                value = np.asarray(to_host(getattr(part, k)), np.float64)
                layout.append((part, k, value.shape, np.ndim(getattr(part, k)) == 0))
                parts.append(value.ravel())
    vec = np.concatenate(parts + [np.array([float(samples)])] +
                         [np.array([float(logs[k]) * samples]) for k in others if k in logs])
    vec = strategy.communicator.allreduce_sum(vec, "the reduction of the evaluation metrics")
    at = 0
    for part, k, shape, scalar in layout:
        size = int(np.prod(shape))
        value = vec[at:at + size].reshape(shape)
        setattr(part, k, float(value) if scalar else value)
        at += size
    out = dict(logs)
    for m in metrics:
        if m.name not in others:
            out[m.name] = float(m.result())
    total_samples = vec[at]
    for i, k in enumerate(k for k in others if k in logs):
        out[k] = float(vec[at + 1 + i] / total_samples) if total_samples else out[k]
    return out


def gather_outputs(strategy, outputs):
    """Every rank's predict output (a structure of NumPy arrays) concatenated in rank order,
    on every rank."""
    comm = strategy.communicator

    def gather(local):
        local = np.ascontiguousarray(local)
        counts = np.zeros(comm.size, np.int64)
        counts[comm.rank] = local.nbytes
        counts = comm.allreduce_sum(counts, "the predict output sizes")
        if counts.sum() % max(local.itemsize * int(np.prod(local.shape[1:], dtype=np.int64)), 1):
            raise ValueError("predict: the ranks' outputs differ in shape or dtype")
        out = comm.allgather_bytes(local.view(np.uint8).reshape(-1), counts, "the gather of the predict outputs")
        return out.view(local.dtype).reshape((-1,) + local.shape[1:])
    return map_structure(gather, outputs)
