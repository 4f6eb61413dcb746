"""Loads OpenBLAS from the scipy-openblas32 wheel before the native module is imported.

The extension's RPATH finds the library for a normal install, but not for ``pip install
--target``, split site dirs or editable builds. Loading it by path (RTLD_LOCAL) works in every
layout. Importing ``scipy_openblas32`` would instead load it globally, where it can capture
SciPy's own BLAS symbols.
"""
import contextlib
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


# FASTCONV_ISA (csrc/bindings/module.cpp) forces _C's kernels down to a lower x86-64 level,
# to test and time what a CPU of that level runs; OpenBLAS then gets the kernels it picks on
# such a CPU too (its Haswell ones are AVX2+FMA, Nehalem's SSE only).
_CORETYPE_FOR_FORCED_ISA = {"avx2": "HASWELL", "baseline": "NEHALEM"}


def blas_coretype_override():
    """The OPENBLAS_CORETYPE fastconv asks for on this CPU, or None to let OpenBLAS choose."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return None
    if os.environ.get("FASTCONV_ISA") in _CORETYPE_FOR_FORCED_ISA:
        return _CORETYPE_FOR_FORCED_ISA[os.environ["FASTCONV_ISA"]]
    flags = _cpu_flags()
    return "SKYLAKEX" if all(f in flags for f in _AVX512_FLAGS) else None


# libgomp threads spin ~300k iterations at every barrier before they sleep. On a busy machine
# a spinning thread holds the core the thread it waits for needs, and each parallel region
# costs a scheduler tick: a ResNet-18 CIFAR b64 step on 2 threads took 2.3-4.2 s at load 4
# with the default and 0.69-0.71 s with 1000-10000 spins (1.35 s with 100; LeNet-5 b256 the
# same 17 ms either way). libgomp reads GOMP_SPINCOUNT once, when it loads with _C; a value
# the user set (or OMP_WAIT_POLICY) is left alone.
_GOMP_SPINCOUNT = "10000"


@contextlib.contextmanager
def _env_while_loading(name, value):
    """os.environ[name] = value for the duration of a library load, if value is not None."""
    if value is None:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        del os.environ[name]


def openmp_environment():
    """Context for importing _C: libgomp loads with fastconv's spin count."""
    untouched = "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
    return _env_while_loading("GOMP_SPINCOUNT", None if untouched else _GOMP_SPINCOUNT)


def blas_environment():
    """Context for importing _C: OPENBLAS_CORETYPE as blas_coretype_override() asks, for a
    library that _C's RPATH loads (no importable scipy_openblas32, so preload_openblas did not
    load it; e.g. a venv that lacks the wheel: there FASTCONV_ISA=avx2 ran OpenBLAS's AVX-512
    kernels, and the avx2 level's GEMMs timed as fast as the avx512 level's)."""
    return _env_while_loading("OPENBLAS_CORETYPE", blas_coretype_override())


# OpenBLAS starts its worker threads as it loads, and each spins on a core (~0.2 s here) waiting
# for a first job before it sleeps. fastconv pins its OpenBLAS to one thread (threads.cpp), so
# they never get one: loaded with one thread it starts none. With them, a process's first
# ResNet-18 CIFAR b1 predicts on 2 threads took 9 ms instead of 6 for ~0.5 s (2-vCPU Zen 4),
# the spinners holding the core fastconv's helper needs. Only our library's load: NumPy's
# OpenBLAS and child processes keep their threads.
def _blas_threads_while_loading():
    keep = "OPENBLAS_NUM_THREADS" in os.environ or "GOTO_NUM_THREADS" in os.environ
    return _env_while_loading("OPENBLAS_NUM_THREADS", None if keep else "1")


def preload_openblas():
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return
    lib_dir = os.path.join(list(spec.submodule_search_locations)[0], "lib")
    if not os.path.isdir(lib_dir):
        return
    for name in sorted(os.listdir(lib_dir)):
        if name.startswith("libscipy_openblas") and ".so" in name:
            # Only for the load: child processes and other BLAS libraries keep theirs.
            with _env_while_loading("OPENBLAS_CORETYPE", blas_coretype_override()), _blas_threads_while_loading():
                ctypes.CDLL(os.path.join(lib_dir, name), mode=os.RTLD_LOCAL)
            return
