"""Runs fastconv's cuda backend on the CPU: tests/fake_cupy.py stands in for CuPy, and
fastconv._cuda_emu for fastconv._cuda: the kernels of csrc/cuda/*.cu compiled as plain C++
and run on the host (csrc/cuda/emulation/). What runs is every line between the API and the
hardware: the Python wrappers (argument order, buffer shapes, transposes, chunking), the
bindings, and the kernels' own code (grid-stride loops, block reductions, warp shuffles);
fake_cupy.traffic counts what crosses between host and device."""
import sys

import pytest

import fastconv
from fastconv import cuda as fcuda

import fake_cupy


def install(monkeypatch):
    """Make `fastconv.set_backend("cuda")` run on fake_cupy and fastconv._cuda_emu for this
    test (skipped when the build left the emulation out)."""
    emu = pytest.importorskip("fastconv._cuda_emu", reason="built with FASTCONV_CUDA_EMULATION=OFF")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setitem(sys.modules, "cupyx", fake_cupy.cupyx)
    monkeypatch.setattr(fcuda, "cp", fake_cupy)
    monkeypatch.setattr(fcuda, "_K", emu)
    monkeypatch.setattr(fcuda, "_s", lambda: 0)
    monkeypatch.setattr(fastconv.random, "_device_streams", {})  # no real-CuPy generators
    fake_cupy.reset_traffic()
    return fake_cupy


def host(a):
    """A fake device array (or a structure of them) as NumPy."""
    if isinstance(a, (list, tuple)):
        return type(a)(host(v) for v in a)
    return a.get() if isinstance(a, fake_cupy.ndarray) else a
