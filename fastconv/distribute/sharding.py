"""Each rank's part of every global batch.

The array adapter draws one permutation per epoch from the "shuffle" stream, whose state the
strategy makes equal on every rank at the start of fit, and cuts it into global batches of
`batch_size` (Keras's rule: batch_size is the global batch). Rank r takes the r-th of N near
equal parts of each (np.array_split: sizes differ by at most one), so the ranks' shards are
disjoint and together cover the epoch. A last global batch with fewer samples than ranks is
dropped on every rank (a rank with no samples would have nothing to contribute). Each step
records the local and global sample counts, which scale the loss (buckets.py).
"""
import numpy as np

from ..training.data import map_structure


class ShardedIterator:
    """Wraps a training EpochIterator of global batches (arrays) or local batches (iterables:
    every rank reads its own data; the global count is then summed over the ranks)."""

    def __init__(self, iterator, strategy, arrays):
        self.iterator, self.strategy, self.arrays = iterator, strategy, arrays
        self.samples = 0  # this rank's samples in the current epoch (for the logs' weights)

    steps = property(lambda self: self.iterator.steps)
    exhausted = property(lambda self: self.iterator.exhausted)

    def __iter__(self):
        n_ranks, rank = self.strategy.num_replicas_in_sync, self.strategy.rank
        self.samples = 0
        for xb, yb, swb in self.iterator:
            if self.arrays:
                total = len(_first(xb))
                if total < n_ranks:
                    continue
                base, extra = divmod(total, n_ranks)  # np.array_split's parts
                start = rank * base + min(rank, extra)
                stop = start + base + (rank < extra)
                xb, yb, swb = (map_structure(lambda a: a[start:stop], s) for s in (xb, yb, swb))
                local = stop - start
            else:
                local = len(_first(xb))
                total = int(self.strategy.communicator.allreduce_sum(np.array([local], np.int64),
                                                                     "the batch-size sum")[0])
            self.strategy._step_counts = (local, total)
            self.samples += local
            yield xb, yb, swb
        self.strategy._step_counts = None  # train_on_batch after fit: equal local batches


def _first(s):
    while isinstance(s, (list, tuple)):
        s = s[0]
    if isinstance(s, dict):
        return _first(next(iter(s.values())))
    return s
