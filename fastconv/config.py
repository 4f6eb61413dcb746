"""Runtime settings of the native (cpu) kernels: threads, workspace, conv algorithm, GEMM,
and the process-wide choices made once at import (environment variables noted per setting).

>>> import fastconv
>>> fastconv.get_conv_algorithm()
'auto'
"""
import os as _os

from . import _C


def set_num_threads(n):
    """Set the thread count of the native kernels (one OpenMP pool; OpenBLAS runs inside it)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int >= 1, got {n!r}")
    _C.set_num_threads(n)


def get_num_threads():
    """Thread count used by the native kernels."""
    return _C.get_num_threads()


def set_workspace_limit(nbytes):
    """Cap, in bytes, on the im2col workspace one convolution may allocate (default 32 MiB)."""
    _C.set_workspace_limit(int(nbytes))


def set_output_pool_limit(nbytes):
    """Cap, in bytes, on freed kernel outputs kept for reuse (default 1 GiB; 0: none kept).

    A model's forward allocates the same output sizes on every call; an output of 4 KiB or
    more reuses a freed block of the same size instead of asking malloc, whose heap can grow
    anew (pages faulted in and zeroed) when the largest outputs no longer fit its holes.
    Past the cap the least recently freed blocks go back to malloc."""
    _C.set_output_pool_limit(int(nbytes))


def output_pool_stats():
    """{'cached_bytes', 'cached_blocks', 'hits', 'misses', 'limit'} of the output pool."""
    return dict(_C.output_pool_stats())


_CONV_ALGORITHMS = ("auto", "im2col", "winograd", "direct")


def set_conv_algorithm(name):
    """Choose how the cpu backend computes convolutions (all three passes).

    'auto' (default): the kernel measured fastest per layer: the direct kernel for few
    channels (groups 1, Cin <= 8, Cout <= 64 forward / <= 32 backward, not a plain 1x1), Winograd F(4x4, 3x3) for
    3x3 stride-1 convs with at least 8 input and output channels and 8 tiles, im2col + GEMM
    otherwise. 'im2col': always im2col. 'winograd': wherever it applies (3x3, stride 1,
    dilation 1, groups 1, each pad <= 2, blocks within the workspace limit), the 'auto'
    choice elsewhere. 'direct': the direct kernel for every groups == 1 conv. Depthwise convs
    always run the depthwise kernel. fastconv.functional.conv2d_algorithm tells one layer's choice.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {list(_CONV_ALGORITHMS)}, got {type(name).__name__}")
    if name.lower() not in _CONV_ALGORITHMS:
        raise ValueError(f"name must be one of {list(_CONV_ALGORITHMS)}, got {name!r}")
    _C.set_conv_algorithm(name.lower())


def get_conv_algorithm():
    """The current convolution algorithm setting: 'auto', 'im2col', 'winograd' or 'direct'."""
    return _C.get_conv_algorithm()


_GEMM_BACKENDS = ("auto", "openblas", "native")


def set_gemm_backend(name):
    """Choose the serial matrix product under every conv/dense kernel.

    'native' is fastconv's own AVX-512 SGEMM (where the avx512 kernel level runs, see
    `fastconv info`), 'openblas' the bundled OpenBLAS, 'auto' (the default) native where it
    runs. The environment variable FASTCONV_GEMM sets the starting value.
    """
    if name not in _GEMM_BACKENDS:
        raise ValueError(f"gemm backend must be one of {', '.join(map(repr, _GEMM_BACKENDS))}, got {name!r}")
    if name == "native" and not _C.has_native_gemm:
        level = _C.isa_level()
        raise ValueError(f"gemm backend 'native' needs the avx512 kernel level, this process runs the "
                         f"{level} level (the CPU lacks AVX-512, or FASTCONV_ISA chose a lower "
                         "level); use 'auto' or 'openblas'")
    _C.set_gemm_backend(name)


def get_gemm_backend():
    """The selected gemm backend: 'auto', 'openblas' or 'native' (see set_gemm_backend)."""
    return _C.get_gemm_backend()


# ---- read once, at import -------------------------------------------------------------------
if _os.environ.get("FASTCONV_GEMM"):
    set_gemm_backend(_os.environ["FASTCONV_GEMM"])

# OMP_NUM_THREADS, when set, is the starting count (OpenBLAS's own variables are not read).
_C.set_num_threads(int(_os.environ.get("OMP_NUM_THREADS", 0) or _C.get_num_threads()))

# Every op allocates its output afresh; glibc hands large blocks out as fresh mmaps whose pages
# fault in (and are zeroed) on first touch, then unmaps them on free. Keeping freed memory on
# the heap lets a training step reuse the previous step's pages (2-core EPYC: batch-norm
# backward in a ResNet-18 CIFAR b64 step 59 -> 13 ms, max-pool 3x3 s2 forward+backward on
# 32x112x112x64 42 -> 16 ms). The cost: resident memory stays at its peak until exit.
# FASTCONV_KEEP_FREED_MEMORY=0 leaves malloc as it was and turns the output pool off;
# FASTCONV_OUTPUT_POOL_LIMIT=<bytes> sets the pool's cap alone.
if _os.environ.get("FASTCONV_KEEP_FREED_MEMORY", "1") != "0":
    _C.keep_freed_memory()
else:
    set_output_pool_limit(0)
if _os.environ.get("FASTCONV_OUTPUT_POOL_LIMIT"):
    set_output_pool_limit(int(_os.environ["FASTCONV_OUTPUT_POOL_LIMIT"]))
