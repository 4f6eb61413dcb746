"""Collectives between GPUs over NCCL (cupy.cuda.nccl), one GPU per rank; MPI only carries
NCCL's unique id at start-up. Reductions run on the device on the current stream, in place,
with no host copies; `wait` polls a CUDA event with the same deadline as the MPI path and
aborts the NCCL communicator when it passes (NCCL has no timeout of its own).

Not run on this project's CI machine (no GPU, no NCCL): written against CuPy's documented
NcclCommunicator API (allReduce, bcast, abort) and checked on real GPUs only when one is lent.
"""
import time

import numpy as np

from .communicator import CollectiveTimeout

_TYPES = {"float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64", "int64": "NCCL_INT64",
          "uint8": "NCCL_UINT8", "int32": "NCCL_INT32"}


class NcclCommunicator:
    def __init__(self, mpi, device=None):
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as e:
            raise ImportError("communication='nccl' needs CuPy built with NCCL support "
                              "(pip install cupy-cuda12x; NCCL comes with it)") from e
        self.cupy, self.nccl, self.mpi = cupy, nccl, mpi
        self.rank, self.size, self.timeout = mpi.rank, mpi.size, mpi.timeout
        count = cupy.cuda.runtime.getDeviceCount()
        cupy.cuda.Device((mpi.rank if device is None else device) % count).use()
        uid = np.zeros(128, np.int16)  # NCCL_UNIQUE_ID_BYTES
        if mpi.rank == 0:
            uid[:] = np.array(nccl.get_unique_id(), np.int16)
        mpi.broadcast(uid, 0, "the NCCL id broadcast")
        self.comm = nccl.NcclCommunicator(mpi.size, tuple(int(c) for c in uid), mpi.rank)

    def _type(self, array):
        name = _TYPES.get(str(array.dtype))
        if name is None:
            raise TypeError(f"NCCL reduces {sorted(_TYPES)} arrays, got {array.dtype}")
        return getattr(self.nccl, name)

    def _done(self):
        event = self.cupy.cuda.Event(disable_timing=True)
        event.record()
        return event

    def iallreduce_sum(self, buf):
        stream = self.cupy.cuda.get_current_stream()
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._type(buf), self.nccl.NCCL_SUM, stream.ptr)
        return self._done()

    def wait(self, requests, what):
        deadline = time.monotonic() + self.timeout
        for event in requests:
            while not event.done:
                if time.monotonic() > deadline:
                    self.comm.abort()
                    raise CollectiveTimeout(f"rank {self.rank}: {what} (NCCL) did not complete within "
                                            f"{self.timeout:g} s; another of the {self.size} ranks has "
                                            "died, hangs or raised")
                time.sleep(1e-4)

    def progress(self, requests):
        pass  # NCCL progresses on its own stream

    def allreduce_sum(self, array, what="allreduce"):
        buf = self.cupy.ascontiguousarray(array).copy()
        self.wait([self.iallreduce_sum(buf)], what)
        return buf

    def broadcast(self, buf, root=0, what="broadcast"):
        stream = self.cupy.cuda.get_current_stream()
        self.comm.bcast(buf.data.ptr, buf.size, self._type(buf), root, stream.ptr)
        self.wait([self._done()], what)
        return buf
