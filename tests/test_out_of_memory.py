"""Running out of memory inside a kernel raises MemoryError and leaves the process usable.

A C++ exception that leaves an OpenMP parallel region calls std::terminate, which used to
abort the interpreter (SIGABRT) when a per-thread buffer failed to allocate. Each family of
kernels runs in a subprocess: a small call first (it starts the OpenMP threads and their
malloc arenas, so that later allocations are the kernel's own), then, for each case, the
address-space limit (RLIMIT_AS) is set to what the process maps now plus `headroom` bytes: room
for the outputs and for whatever the kernel allocates before the allocation under test, but
not for that one. The kernel must raise MemoryError('std::bad_alloc') (C++'s bad_alloc through
pybind11, not numpy failing to allocate an output); with the limit lifted again, the small call
must give the same result as before.

Where the allocation under test is inside an OpenMP region ("in region" below), the old
kernels aborted; the others (workspaces allocated before the region) already raised.
Softmax, concat, dense forward, pooling forwards and the elementwise kernels allocate nothing
but their outputs (numpy raises for those), so they are not here.
"""
import platform
import sys

import pytest

from fastconv_subprocess import run_python

SCRIPT = r"""
import ctypes, resource, sys
import numpy as np
import fastconv
from fastconv import _C

# Every block of 64 KiB or more gets its own mapping, unmapped when freed (the test runs with
# FASTCONV_KEEP_FREED_MEMORY=0): the mapped size is then exactly what is alive, and no case
# reuses a previous case's freed memory under its limit.
M_MMAP_THRESHOLD = -3
assert ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 1 << 16) == 1

MiB = 1 << 20
family = sys.argv[1]
_C.set_num_threads(2)


def ones(*shape):
    return np.ones(shape, np.float32)


# Before any limit: start the OpenMP team, and give each of its threads its malloc arena (batch
# norm's per-thread accumulators) and its OpenBLAS buffer (a product split across threads).
# Else the limit would hit libgomp creating threads (it exits) or OpenBLAS (it gives up).
_C.dense_forward(ones(512, 256), ones(256, 64), None)
_C.batch_norm_forward_train(ones(256, 1024), ones(1024), ones(1024), 1e-3)


def mapped_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def out_of_memory(name, small, make_big, call, headroom):
    before = small()
    big = make_big()  # allocated before the limit: they are inputs, not the kernel's memory
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mapped_bytes() + headroom, hard))
    try:
        call(*big)
        outcome = "no error"
    except MemoryError as e:
        outcome = f"MemoryError({e})"
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    del big
    after = small()
    same = all(np.array_equal(a, b) for a, b in zip(before, after))
    print(f"{name}: {outcome}, usable: {same}", flush=True)


def nbytes(*shape):
    return int(np.prod(shape)) * 4


def conv_cases(x_shape, w_shape, pads, headroom):
    # headroom: {pass: bytes beyond the outputs}
    args = ((1, 1), pads, (1, 1), 1)
    sx, sw = (1, 6, 6, min(x_shape[3], 8)), (3, 3, min(x_shape[3], 8), min(w_shape[3], 8))
    y_shape = _C.conv2d_forward(ones(*sx), ones(*sw), None, *args).shape
    n, h, w, c = x_shape
    kh, kw, _, oc = w_shape
    oh, ow = h + pads[0] + pads[1] - kh + 1, w + pads[2] + pads[3] - kw + 1
    out_y, out_x, out_w = nbytes(n, oh, ow, oc), nbytes(*x_shape), nbytes(*w_shape) + nbytes(oc)
    small_fwd = lambda: [_C.conv2d_forward(ones(*sx), ones(*sw), None, *args)]
    small_bwd_data = lambda: [_C.conv2d_backward_data(ones(*y_shape), ones(*sw), sx, *args)]
    small_bwd_weights = lambda: list(_C.conv2d_backward_weights(ones(*y_shape), ones(*sx), sw, *args, True))
    yield ("forward", small_fwd, lambda: (ones(*x_shape), ones(*w_shape)),
           lambda x, wt: _C.conv2d_forward(x, wt, None, *args), out_y + headroom["forward"])
    yield ("backward_data", small_bwd_data, lambda: (ones(n, oh, ow, oc), ones(*w_shape)),
           lambda dy, wt: _C.conv2d_backward_data(dy, wt, x_shape, *args),
           out_x + headroom["backward_data"])
    yield ("backward_weights", small_bwd_weights, lambda: (ones(n, oh, ow, oc), ones(*x_shape)),
           lambda dy, x: _C.conv2d_backward_weights(dy, x, w_shape, *args, True),
           out_w + headroom["backward_weights"])


def cases():
    if family == "conv-im2col":
        # One output line's col matrix (OW x 3*3*64 floats, 92 MiB) is the workspace, allocated
        # before the region.
        fastconv.set_conv_algorithm("im2col")
        yield from conv_cases((1, 3, 40000, 64), (3, 3, 64, 1), (0, 0, 0, 0),
                              dict(forward=32 * MiB, backward_data=32 * MiB, backward_weights=32 * MiB))
    elif family == "conv-winograd":
        # The filter transform U (36 x 1024 x 1024 floats, 144 MiB; backward weights: one per
        # thread), allocated before the region.
        fastconv.set_conv_algorithm("winograd")
        yield from conv_cases((1, 4, 4, 1024), (3, 3, 1024, 1024), (1, 1, 1, 1),
                              dict(forward=64 * MiB, backward_data=64 * MiB, backward_weights=64 * MiB))
    elif family == "conv-direct":
        # The issue's case: each thread's packed rows of a 2M-pixel-wide image (in region).
        fastconv.set_conv_algorithm("direct")
        yield from conv_cases((1, 5, 2000000, 1), (5, 5, 1, 6), (0, 0, 0, 0),
                              dict(forward=16 * MiB, backward_data=16 * MiB, backward_weights=16 * MiB))
    elif family == "depthwise":
        # Forward and backward data (stride 1) through the streamed gather: each thread's
        # row scratch (W*C floats, 16 MiB) in region, after a zero row of the same size. The
        # forward with sigmoid: with the activation fused in registers (linear, relu) and C a
        # multiple of 16, the AVX-512 tiles stream straight from registers, with no scratch;
        # so backward data (linear) runs with C = 8184, no multiple of 16.
        _C.set_stream_threshold(0)
        args = ((1, 1), (0, 0, 0, 0), (1, 1), 8192)
        row = nbytes(512, 8192)
        small = lambda: [_C.conv2d_forward(ones(1, 5, 7, 8192 // 64), ones(3, 3, 1, 8192 // 64), None,
                                           (1, 1), (0, 0, 0, 0), (1, 1), 8192 // 64)]
        yield ("forward", small, lambda: (ones(1, 3, 512, 8192), ones(3, 3, 1, 8192)),
               lambda x, wt: _C.conv2d_forward(x, wt, None, *args, "sigmoid"), nbytes(1, 1, 510, 8192) + row + 8 * MiB)
        args_bd = ((1, 1), (0, 0, 0, 0), (1, 1), 8184)
        yield ("backward_data", small, lambda: (ones(1, 1, 510, 8184), ones(3, 3, 1, 8184)),
               lambda dy, wt: _C.conv2d_backward_data(dy, wt, (1, 3, 512, 8184), *args_bd),
               nbytes(1, 3, 512, 8184) + row + 8 * MiB)
        # Backward weights: each thread's partial sums (10 x C floats, 20 MiB) in region, after
        # the double totals of every thread (2 x 10 x C doubles) and a zero row (3 x C floats).
        c = 1 << 19
        args = ((1, 1), (0, 0, 0, 0), (1, 1), c)
        yield ("backward_weights", small, lambda: (ones(1, 1, 1, c), ones(1, 3, 3, c)),
               lambda dy, x: _C.conv2d_backward_weights(dy, x, (3, 3, 1, c), *args, True),
               nbytes(10, c) + 2 * 2 * nbytes(10, c) + nbytes(3, c) + 10 * MiB)
    elif family == "pool":
        # Per-task buffers (a quarter of the channels each on 2 threads), in region.
        c = 1 << 23
        pool = ((1, 2), (1, 2), (0, 0, 0, 0))
        small = lambda: [_C.max_pool2d_backward(ones(2, 3, 2, 40), ones(2, 3, 4, 40), *pool),
                         _C.global_avg_pool2d_forward(ones(2, 3, 4, 40))]
        yield ("max_pool2d_backward", small, lambda: (ones(1, 1, 1, c), ones(1, 1, 2, c)),
               lambda dy, x: _C.max_pool2d_backward(dy, x, *pool), nbytes(1, 1, 2, c) + 4 * MiB)
        yield ("global_avg_pool2d_forward", small, lambda: (ones(1, 1, 1, c),),
               lambda x: _C.global_avg_pool2d_forward(x), nbytes(1, c) + 8 * MiB)
    elif family == "dense":
        # The bias gradient's per-thread partial sums (M floats a thread), before the region.
        # One thread: OpenBLAS allocates a buffer for each thread that calls it at once (and
        # exits, not raises, when it cannot); with two, whether the warm-up left it a second
        # buffer depended on how the calls overlapped (CI failed once). One thread calls it
        # here, and its buffer comes from the "small" call of the same shapes.
        _C.set_num_threads(1)
        m = 1 << 22
        small = lambda: list(_C.dense_backward(ones(1, m), ones(1, 1), ones(1, m)))
        yield ("dense_backward", small, lambda: (ones(1, m), ones(1, 1), ones(1, m)),
               lambda dy, x, w: _C.dense_backward(dy, x, w), 2 * nbytes(m) + 8 * MiB)
    elif family == "batchnorm":
        # column_reduce's per-thread float accumulators (2 x C floats, 16 MiB), in region, after
        # the pivot row (C floats), the sums (2 x C doubles) and the threads' partials (2 x 2 x C
        # doubles).
        c = 1 << 21
        small = lambda: list(_C.batch_norm_forward_train(ones(40, 1000), ones(1000), ones(1000), 1e-3))
        yield ("batch_norm_forward_train", small, lambda: (ones(2, c), ones(c), ones(c)),
               lambda x, g, b: _C.batch_norm_forward_train(x, g, b, 1e-3),
               nbytes(2, c) + 3 * nbytes(c) + nbytes(c) + 2 * 2 * nbytes(c) + 2 * 2 * 2 * nbytes(c) + 8 * MiB)
    elif family == "cuda-emulation":
        # The cuda kernels' own scratch memory (column_reduce's double partial sums, 8 x C
        # bytes): cudaMallocAsync's failure must be a MemoryError, as CuPy's out-of-memory is.
        # The emulation's cudaMallocAsync is malloc, so RLIMIT_AS reaches it.
        from fastconv import _cuda_emu

        def column_sums(a, out):
            _cuda_emu.column_sums(a.ctypes.data, out.ctypes.data, 1, a.shape[0], a.shape[1], 1.0, 0)
            return out

        c = 1 << 22
        small = lambda: [column_sums(ones(3, 5), np.empty(5, np.float32))]
        yield ("column_sums", small, lambda: (ones(1, c), np.empty(c, np.float32)), column_sums, 8 * MiB)
    else:
        raise SystemExit(f"unknown family {family}")


only = sys.argv[2:]  # case names, when debugging one
for case in cases():
    if not only or case[0] in only:
        out_of_memory(*case)
"""

FAMILIES = {
    "conv-im2col": ["forward", "backward_data", "backward_weights"],
    "conv-winograd": ["forward", "backward_data", "backward_weights"],
    "conv-direct": ["forward", "backward_data", "backward_weights"],
    "depthwise": ["forward", "backward_data", "backward_weights"],
    "pool": ["max_pool2d_backward", "global_avg_pool2d_forward"],
    "dense": ["dense_backward"],
    "batchnorm": ["batch_norm_forward_train"],
    "cuda-emulation": ["column_sums"],
}
# What the MemoryError says: C++'s bad_alloc through pybind11 (not numpy failing to allocate an
# output); the cuda kernels name the call and the CUDA error.
MESSAGES = {"cuda-emulation": "fastconv._cuda.column_sums: CUDA error 2 (cudaErrorMemoryAllocation): "
                              "cudaErrorMemoryAllocation"}


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="needs RLIMIT_AS, /proc/self/statm and glibc's mallopt")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_out_of_memory_raises_memory_error_and_the_process_lives(family):
    if family == "cuda-emulation":
        pytest.importorskip("fastconv._cuda_emu", reason="built with FASTCONV_CUDA_EMULATION=OFF")
    proc = run_python(["-c", SCRIPT, family], env={"FASTCONV_KEEP_FREED_MEMORY": "0"},
                      capture_output=True, text=True, timeout=120)
    report = f"returncode {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, report  # -6: SIGABRT, an exception left an OpenMP region
    lines = proc.stdout.splitlines()
    message = MESSAGES.get(family, "std::bad_alloc")
    assert lines == [f"{name}: MemoryError({message}), usable: True" for name in FAMILIES[family]], report
