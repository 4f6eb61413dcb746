"""The NCCL path of fastconv.distribute on the cuda emulation (fake_cupy + fastconv._cuda_emu):
a fake `cupy.cuda.nccl` stands for two identical ranks (allReduce writes 2 x the buffer,
through the same device pointers NCCL would get), so a data-parallel fit whose global batches
are two copies of one half must end with the weights of one process on those batches. This
runs the device-side buckets, the NCCL communicator (id broadcast, dtypes, events, waits) and
SyncBatchNormalization on device arrays. Real NCCL between GPUs is not run here."""
import ctypes
import sys
import types

import numpy as np
import pytest

import fastconv
from fastconv import layers, optimizers

import cuda_emulation
import fake_cupy
from test_distribute import FakeCommunicator, fake_strategy

_CTYPES = {0: ctypes.c_float, 1: ctypes.c_double, 2: ctypes.c_int64}


class FakeNcclCommunicator:
    def __init__(self, ranks, uid, rank):
        assert len(uid) == 128 and 0 <= rank < ranks
        self.ranks, self.calls = ranks, []

    def _view(self, ptr, count, dtype):
        return np.ctypeslib.as_array((_CTYPES[dtype] * count).from_address(ptr))

    def allReduce(self, send, recv, count, dtype, op, stream):
        self.calls.append(("allReduce", count))
        self._view(recv, count, dtype)[:] = self._view(send, count, dtype) * self.ranks

    def bcast(self, buf, count, dtype, root, stream):
        self.calls.append(("bcast", count))

    def abort(self):
        self.calls.append(("abort",))


def fake_nccl_module():
    m = types.ModuleType("cupy.cuda.nccl")
    m.NCCL_FLOAT32, m.NCCL_FLOAT64, m.NCCL_INT64, m.NCCL_UINT8, m.NCCL_INT32, m.NCCL_SUM = 0, 1, 2, 3, 4, 0
    m.get_unique_id = lambda: tuple(range(-64, 64))
    m.NcclCommunicator = FakeNcclCommunicator
    return m


class _Event:
    done = True

    def __init__(self, disable_timing=False):
        pass

    def record(self, stream=None):
        pass


@pytest.fixture
def gpu_nccl(monkeypatch):
    before = fastconv.get_backend()
    cuda_emulation.install(monkeypatch)
    nccl = fake_nccl_module()
    cuda_ns = types.SimpleNamespace(**vars(fake_cupy.cuda), nccl=nccl, Event=_Event)
    monkeypatch.setattr(fake_cupy, "cuda", cuda_ns)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda_ns)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", nccl)
    monkeypatch.setattr(fake_cupy._Device, "use", lambda self: None, raising=False)
    fastconv.set_backend("cuda")
    yield
    fastconv.set_backend(before)


def _model(strategy):
    fastconv.set_seed(4)
    with strategy.scope() if strategy is not None else _Nothing():
        model = fastconv.Sequential([
            layers.Input((6, 6, 2)), layers.Conv2D(4, 3, padding="same", use_bias=False),
            layers.SyncBatchNormalization(), layers.ReLU(), layers.GlobalAveragePooling2D(), layers.Dense(3)])
        model.compile(optimizers.SGD(0.1, momentum=0.9),
                      fastconv.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_nccl_path_equals_one_process_on_the_emulation(gpu_nccl):
    from fastconv.distribute.nccl import NcclCommunicator
    rng = np.random.default_rng(0)
    half = rng.normal(size=(3, 8, 6, 6, 2)).astype(np.float32)  # 3 steps, 8 samples per rank
    labels = rng.integers(0, 3, (3, 8))
    # each global batch of 16 is one half twice: what two ranks holding equal shards see
    x = np.concatenate([half, half], axis=1).reshape(48, 6, 6, 2)
    y = np.concatenate([labels, labels], axis=1).reshape(48)
    one = _model(None)
    one.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    strategy = fake_strategy(ranks=2)
    strategy.device_communicator = NcclCommunicator(FakeCommunicator(2), device=None)
    two = _model(strategy)
    two.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    calls = strategy.device_communicator.comm.calls
    assert isinstance(two.weights[0].data, fake_cupy.ndarray)  # trained on the (emulated) device
    assert [c for c in calls if c[0] == "bcast"] == [("bcast", int(np.prod(v.shape))) for v in two.weights]
    # per step: SyncBN's mean and variance, its backward sums (2 x 4 channels), one bucket
    per_step = [("allReduce", 4), ("allReduce", 4), ("allReduce", 8),
                ("allReduce", sum(int(np.prod(v.shape)) for v in two.trainable_weights))]
    assert [c for c in calls if c[0] == "allReduce"] == per_step * 3
    for a, b in zip(one.get_weights(), two.get_weights()):
        assert isinstance(b, np.ndarray)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert not np.allclose(one.get_weights()[0], _model(None).get_weights()[0])  # it trained
