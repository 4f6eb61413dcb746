"""Loads OpenBLAS from the scipy-openblas32 wheel before the native module is imported.

The extension's RPATH finds the library for a normal install, but not for ``pip install
--target``, split site dirs or editable builds. Loading it by path (RTLD_LOCAL) works in every
layout. Importing ``scipy_openblas32`` would instead load it globally, where it can capture
SciPy's own BLAS symbols.
"""
import ctypes
import importlib.util
import os

# OpenBLAS picks its kernels by CPU model. It files AMD Zen 4/5 under ZEN, which runs the
# 256-bit Haswell sgemm, although those cores execute AVX-512: with the SkylakeX (AVX-512)
# kernels sgemm 2048^3 went from 126 to 245 GFLOP/s on one core of a Zen 5 EPYC (peak by an
# FMA loop: 261), and a ResNet 3x3 conv from 220 to 360-440 GFLOP/s on two. OpenBLAS reads
# OPENBLAS_CORETYPE once, when the library loads; a value already in the environment is left
# alone (some sites pin Haswell on purpose, for older OpenBLAS builds that misbehaved).
_AVX512_FLAGS = ("avx512f", "avx512dq", "avx512bw", "avx512vl")


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def blas_coretype_override():
    """The OPENBLAS_CORETYPE fastconv asks for on this CPU, or None to let OpenBLAS choose."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return None
    flags = _cpu_flags()
    return "SKYLAKEX" if all(f in flags for f in _AVX512_FLAGS) else None


def preload_openblas():
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return
    lib_dir = os.path.join(list(spec.submodule_search_locations)[0], "lib")
    if not os.path.isdir(lib_dir):
        return
    for name in sorted(os.listdir(lib_dir)):
        if name.startswith("libscipy_openblas") and ".so" in name:
            coretype = blas_coretype_override()
            if coretype:  # only for the load: child processes and other BLAS libraries keep theirs
                os.environ["OPENBLAS_CORETYPE"] = coretype
            try:
                ctypes.CDLL(os.path.join(lib_dir, name), mode=os.RTLD_LOCAL)
            finally:
                if coretype:
                    del os.environ["OPENBLAS_CORETYPE"]
            return
