"""Helpers shared by the softmax forward tests (test_softmax_rows.py, test_softmax_fwd_blocks.py,
test_softmax_fwd_planes.py): the float64 oracle, bitwise comparison and thread-count runs."""
import numpy as np

import fastconv
from fastconv import _C
from fastconv import reference as R


def oracle(x):
    """Softmax over the last axis in float64."""
    return R.softmax_forward(x.reshape(-1, x.shape[-1]).astype(np.float64)).reshape(x.shape)


def same_bits(a, b):
    """Equal bits, NaN where NaN (a NaN's payload may differ)."""
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    np.testing.assert_array_equal(a[ok].view(np.uint32), b[ok].view(np.uint32))


def with_threads(n, fn):
    """fn() with n native threads, the count restored after."""
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(n)
    try:
        return fn()
    finally:
        fastconv.set_num_threads(before)


def threads_same_bits(x, rtol, atol):
    """Softmax of x on 1 and on 3 threads: equal arrays, and close to the oracle."""
    one = with_threads(1, lambda: _C.softmax_forward(x))
    three = with_threads(3, lambda: _C.softmax_forward(x))
    np.testing.assert_array_equal(one, three)
    np.testing.assert_allclose(one, oracle(x), rtol=rtol, atol=atol)
