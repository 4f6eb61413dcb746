"""The cuda backend's availability errors, on any machine: asking for it without CuPy,
without fastconv._cuda or without a GPU raises a RuntimeError that names the missing piece,
and leaves the active backend unchanged."""
import sys
import types

import pytest

import fastconv
from fastconv import cuda as fcuda


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(fcuda, "_K", None)
    monkeypatch.setattr(fcuda, "cp", None)
    return monkeypatch


def _fake_cupy(device_count):
    def get_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count
    runtime = types.SimpleNamespace(getDeviceCount=get_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def _expect(match):
    before = fastconv.get_backend()
    with pytest.raises(RuntimeError, match=match):
        fastconv.set_backend("cuda")
    assert fastconv.get_backend() == before
    assert not fcuda.is_available()


def test_missing_cupy_is_named(fresh):
    fresh.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    _expect("needs CuPy.*cupy-cuda13x.*cupy-cuda12x")


def test_missing_extension_is_named(fresh):
    fresh.setitem(sys.modules, "cupy", _fake_cupy(1))
    fresh.setitem(sys.modules, "fastconv._cuda", None)
    _expect(r"needs fastconv\._cuda, which was not built.*nvcc")


def test_missing_gpu_is_named(fresh):
    fresh.setitem(sys.modules, "cupy", _fake_cupy(RuntimeError("cudaErrorNoDevice")))
    fresh.setitem(sys.modules, "fastconv._cuda", types.SimpleNamespace(device_count=lambda: 1, set_device=lambda d: None))
    _expect("needs a CUDA GPU.*cudaErrorNoDevice")
    fresh.setitem(sys.modules, "cupy", _fake_cupy(0))
    _expect("needs a CUDA GPU, and none is visible")


def test_to_host_passes_numpy_through():
    import numpy as np
    a = np.arange(3.0)
    assert fcuda.to_host(a) is a


def test_cuda_module_implements_the_whole_kernel_interface():
    # DESIGN.md "Kernel interface" (minus the _C-only thread/workspace knobs).
    names = """conv2d_forward conv2d_backward_data conv2d_backward_weights dense_forward dense_backward
        max_pool2d_forward max_pool2d_backward avg_pool2d_forward avg_pool2d_backward
        global_avg_pool2d_forward global_avg_pool2d_backward batch_norm_forward_train
        batch_norm_forward_inference batch_norm_backward bias_act_forward bias_act_backward
        softmax_forward softmax_backward softmax_cross_entropy_forward softmax_cross_entropy_backward
        concat_last""".split()
    from fastconv import reference
    import inspect
    for name in names:
        assert callable(getattr(fcuda, name, None)), name
        want = list(inspect.signature(getattr(reference, name)).parameters)
        assert list(inspect.signature(getattr(fcuda, name)).parameters) == want, name
