"""Collectives over MPI (mpi4py, imported only when a strategy is made).

Every wait polls with a deadline: a rank that dies or stops answering turns into a
CollectiveTimeout naming the operation after `timeout` seconds instead of a hang (the
strategy's exception hook then aborts the whole job). Buffers are contiguous float32/float64/
uint8 NumPy arrays reduced in place; results are identical on every rank.
"""
import time

import numpy as np


SPIN_S = 1.0


class CollectiveTimeout(RuntimeError):
    """A collective did not complete within the strategy's timeout (another rank died, hangs
    or raised)."""


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("MultiWorkerMirroredStrategy needs mpi4py and an MPI library: "
                          "pip install 'fastconv[mpi]' (or mpi4py built against your site's MPI)") from e
    return MPI


class MpiCommunicator:
    """One MPI communicator (COMM_WORLD by default) with timed, non-blocking collectives."""

    def __init__(self, timeout=300.0, comm=None):
        if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.MPI = _import_mpi()
        self.comm = comm if comm is not None else self.MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = float(timeout)

    # -- non-blocking -----------------------------------------------------------------------
    def iallreduce_sum(self, buf):
        """Start summing `buf` in place over all ranks; returns the request."""
        return self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    def wait(self, requests, what):
        """Wait for every request; CollectiveTimeout after `timeout` seconds. Polling (Test)
        also drives MPI's progress for the other pending reductions."""
        requests = list(requests)
        start = time.monotonic()
        deadline, pause = start + self.timeout, 0.0
        while not self.MPI.Request.Testall(requests):
            now = time.monotonic()
            if now > deadline:
                raise CollectiveTimeout(
                    f"rank {self.rank}: {what} did not complete within {self.timeout:g} s; another "
                    f"of the {self.size} ranks has died, hangs or raised (raise the strategy's "
                    "timeout= for very slow steps)")
            # Spin first, as a blocking MPI call does (MPICH progresses a non-blocking
            # reduction only inside MPI calls); after SPIN_S, back off so a rank waiting
            # for a slow or dead peer does not burn a core.
            if now - start > SPIN_S:
                time.sleep(pause)
                pause = min(pause + 1e-4, 1e-2)

    def progress(self, requests):
        """Let MPI move pending reductions forward (no wait)."""
        if requests:
            self.MPI.Request.Testall(list(requests))

    # -- blocking (built on the timed wait) ---------------------------------------------------
    def allreduce_sum(self, array, what="allreduce"):
        buf = np.ascontiguousarray(np.array(array, copy=True))
        self.wait([self.iallreduce_sum(buf)], what)
        return buf

    def broadcast(self, buf, root=0, what="broadcast"):
        """Overwrite the contiguous array `buf` with root's, in place."""
        self.wait([self.comm.Ibcast(buf, root=root)], what)
        return buf

    def broadcast_bytes(self, data, root=0, what="broadcast"):
        n = np.array([len(data) if self.rank == root else 0], np.int64)
        self.broadcast(n, root, what)
        buf = np.frombuffer(data, np.uint8).copy() if self.rank == root else np.empty(int(n[0]), np.uint8)
        self.broadcast(buf, root, what)
        return buf.tobytes()

    def allgather_bytes(self, local, counts, what="allgather"):
        """Every rank's uint8 buffer `local` concatenated in rank order; counts[r] is rank r's
        length (known to all)."""
        counts = [int(c) for c in counts]
        displs = [sum(counts[:r]) for r in range(self.size)]
        out = np.empty(sum(counts), np.uint8)
        self.wait([self.comm.Iallgatherv(local, [out, counts, displs, self.MPI.BYTE])], what)
        return out

    def barrier(self, what="barrier"):
        self.wait([self.comm.Ibarrier()], what)

    def abort(self, code=1):
        self.comm.Abort(code)
