"""Strided convs under the OpenBLAS GEMM (csrc/cpu/conv2d.cpp use_tap_gemm, kTapMinColumnsBlas).

With OpenBLAS as the serial GEMM (CPUs without AVX-512, or set_gemm_backend("openblas") on any
CPU) the per-(line, tap) products lost to im2col's chunk product: the forward then always takes
the col path, and backward data keeps the tap products from 48 output columns on, and where
there are fewer than 4 images a thread (im2col gives each thread whole images). The
routing is checked by identity: where a pass takes the col path under "auto", its result is the
one the "im2col" setting gives, bit for bit (the same code on the same operands). Every result
is also checked against the float64 oracle (conv_oracle.close: rtol 1e-4, atol 1e-5 times the
magnitude), with odd sizes, batch 1, the layer of issue 18 item 2 scaled down, 1 and 2
threads, and NaN in x / dy must reach the outputs it feeds, as in the oracle.
"""
import contextlib

import numpy as np
import pytest

from fastconv import _C
from fastconv import reference as R
from fastconv.functional._args import resolve_padding
from conv_oracle import close

# name: (n, h, w, cin, cout, k, strides, padding); all tap-eligible by their channels
# (>= 32 each side), >= 16 output columns and weights <= 512 KiB.
CASES = {
    # item 2's 56x56 64->128 k3 s2 'same' at batch 8 and 32x32 (ow 16: the narrowest tap shape)
    "item2_scaled_32x32": (8, 32, 32, 64, 128, 3, (2, 2), "same"),
    "odd_57x45_batch1": (1, 57, 45, 48, 40, 3, (2, 2), "same"),  # ow 23, pads (1, 1)
    "valid_odd_37x41": (4, 37, 41, 32, 33, 3, (2, 2), "valid"),  # ow 20: col at 1 thread only
    "pointwise_s2": (2, 34, 40, 64, 96, 1, (2, 2), "valid"),  # ow 20, no pads
    # ow >= 48: backward data keeps the tap products
    "wide_101x97_s2": (1, 101, 97, 32, 48, 3, (2, 2), "same"),  # ow 49
    "wide_batch2_96": (2, 96, 96, 32, 32, 3, (2, 2), "same"),  # ow 48
}

WIDE = {"wide_101x97_s2", "wide_batch2_96"}


@contextlib.contextmanager
def settings(backend="openblas", algorithm="auto", threads=1):
    saved = (_C.get_gemm_backend(), _C.get_conv_algorithm(), _C.get_num_threads())
    _C.set_gemm_backend(backend)
    _C.set_conv_algorithm(algorithm)
    _C.set_num_threads(threads)
    try:
        yield
    finally:
        _C.set_gemm_backend(saved[0])
        _C.set_conv_algorithm(saved[1])
        _C.set_num_threads(saved[2])


def _setup(name, seed):
    n, h, w, cin, cout, k, strides, padding = CASES[name]
    pads = resolve_padding(padding, (h, w), (k, k), strides, (1, 1))
    args = (strides, pads, (1, 1), 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    wt = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return rng, x, wt, b, args


def _passes(x, wt, b, dy, args):
    y = _C.conv2d_forward(x, wt, b, *args)
    dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    dw, db = _C.conv2d_backward_weights(dy, x, wt.shape, *args, True)
    return y, dx, dw, db


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_openblas_matches_oracle_and_routes_to_im2col(name, threads):
    rng, x, wt, b, args = _setup(name, 11)
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    ref_y = R.conv2d_forward(x64, w64, b.astype(np.float64), *args)
    dy = rng.standard_normal(ref_y.shape).astype(np.float32)
    with settings(threads=threads):
        y, dx, dw, db = _passes(x, wt, b, dy, args)
    close(y, ref_y)
    close(dx, R.conv2d_backward_data(dy.astype(np.float64), w64, x.shape, *args))
    rdw, rdb = R.conv2d_backward_weights(dy.astype(np.float64), x64, wt.shape, *args, True)
    close(dw, rdw)
    close(db, rdb)
    with settings(algorithm="im2col", threads=threads):
        y2, dx2, _, _ = _passes(x, wt, b, dy, args)
    np.testing.assert_array_equal(y, y2)  # the forward takes the col path
    if name not in WIDE and x.shape[0] >= 4 * threads:
        np.testing.assert_array_equal(dx, dx2)  # so does backward data below 48 columns


def test_few_images_a_thread_keep_the_tap_backward_data_split():
    # Batch 1 and 3 on 2 threads: the tap products split dx rows over both threads.
    from threads_used import conv_pass_threads
    for n in (1, 3):
        rng = np.random.default_rng(n)
        x = rng.standard_normal((n, 33, 31, 64)).astype(np.float32)
        wt = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
        args = ((2, 2), resolve_padding("same", (33, 31), (3, 3), (2, 2), (1, 1)), (1, 1), 1)
        with settings(threads=2):
            used = conv_pass_threads(x, wt, *args)
        assert used["backward_data"] == 2, used


def test_item2_layer_scaled_fused_activation_and_residual():
    # The forward's col path with relu and a residual, as the inference plan calls it.
    rng, x, wt, b, args = _setup("item2_scaled_32x32", 3)
    ref = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    res = rng.standard_normal(ref.shape).astype(np.float32)
    with settings():
        y = _C.conv2d_forward(x, wt, b, *args, "relu", res)
    close(y, np.maximum(ref + res, 0))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["odd_57x45_batch1", "wide_101x97_s2"])
def test_nan_reaches_what_it_feeds(name, threads):
    rng, x, wt, b, args = _setup(name, 5)
    n, h, w, _ = x.shape
    x[0, h // 2, w // 2, 3] = np.nan
    ref_y = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *args)
    dy = rng.standard_normal(ref_y.shape).astype(np.float32)
    dy[0, ref_y.shape[1] // 3, ref_y.shape[2] // 3, 7] = np.nan
    ref_dx = R.conv2d_backward_data(dy.astype(np.float64), wt.astype(np.float64), x.shape, *args)
    with settings(threads=threads):
        y = _C.conv2d_forward(x, wt, b, *args)
        dx = _C.conv2d_backward_data(dy, wt, x.shape, *args)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y))
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(ref_dx))
    close(np.nan_to_num(y), np.nan_to_num(ref_y))
    close(np.nan_to_num(dx), np.nan_to_num(ref_dx))
