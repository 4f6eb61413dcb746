"""Gradient buckets: the trainable variables are packed, in reverse order (the order backward
makes their gradients final, roughly), into buckets of at most `bucket_bytes`; as soon as
every gradient of a bucket is final its non-blocking sum over the ranks starts, while the
backward pass goes on. Buckets start strictly in index order on every rank (MPI needs the same
collective order everywhere), so the reduction is deterministic for a given rank count.

The loss was scaled by this rank's share of the global batch before backward, so the sum of
the ranks' gradients is the gradient of the global-batch mean loss (the single-process one).
"""
import numpy as np


def plan_buckets(variables, bucket_bytes):
    """Lists of variable indices, each list one bucket (a variable larger than the cap gets a
    bucket of its own). Reverse order: the last layers' gradients are final first."""
    buckets, current, size = [], [], 0
    for i in reversed(range(len(variables))):
        nbytes = int(np.prod(variables[i].shape)) * np.dtype(variables[i].dtype).itemsize
        if current and size + nbytes > bucket_bytes:
            buckets.append(current)
            current, size = [], 0
        current.append(i)
        size += nbytes
    if current:
        buckets.append(current)
    return buckets


class GradientReducer:
    """One backward pass's reduction: `on_leaf` is the autograd hook, `finish` waits and puts
    the summed gradients back into the variables' .grad."""

    def __init__(self, comm, variables, buckets, xp=np, dtype=np.float32):
        self.comm, self.variables, self.buckets, self.xp = comm, variables, buckets, xp
        self.index = {id(v): i for i, v in enumerate(variables)}
        self.where = {}
        self.buffers = []
        for b, members in enumerate(buckets):
            offset = 0
            for i in members:
                n = int(np.prod(variables[i].shape))
                self.where[i] = (b, offset, n)
                offset += n
            self.buffers.append(xp.zeros(offset, dtype))
        self.missing = [len(m) for m in buckets]
        self.had_grad = set()
        self.requests, self.next_bucket = [], 0

    def on_leaf(self, tensor):
        i = self.index.get(id(tensor))
        if i is None or i in self.had_grad:
            return
        b, offset, n = self.where[i]
        self.buffers[b][offset:offset + n] = tensor.grad.reshape(-1)
        self.had_grad.add(i)
        self.missing[b] -= 1
        self._start_ready()

    def _start_ready(self, force=False):
        while self.next_bucket < len(self.buckets) and (force or self.missing[self.next_bucket] == 0):
            self.requests.append(self.comm.iallreduce_sum(self.buffers[self.next_bucket]))
            self.next_bucket += 1
        self.comm.progress(self.requests)

    def finish(self):
        """Start what is left (a variable without a gradient here adds zeros), wait, and write
        the sums into .grad (a variable that got no gradient on this rank keeps None)."""
        self._start_ready(force=True)
        self.comm.wait(self.requests, "the gradient allreduce")
        for i, v in enumerate(self.variables):
            if i in self.had_grad:
                b, offset, n = self.where[i]
                v.grad = self.buffers[b][offset:offset + n].reshape(v.shape)
