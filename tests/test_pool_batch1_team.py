"""Pooling of one image on two threads (csrc/cpu/pool_tasks.h for_each_task): the channel
blocks go to the item team (item_team.h) instead of an OpenMP region. Values against the
NumPy oracle (float64; max pool exactly, averages rtol 1e-6), the threads hook shows the
split ran on two threads, and the results equal the one-thread ones bit for bit."""
import numpy as np
import pytest

import fastconv
from fastconv import _C
from fastconv import reference as R

# (h, w, c): above the parallel grain (32768 elements), C a multiple of 16 and not
CASES = [(7, 7, 1024), (14, 14, 250), (57, 55, 24)]


def _runs(x):
    args = ((3, 3), (2, 2), (1, 1, 1, 1))
    return {
        "global_avg": (lambda: _C.global_avg_pool2d_forward(x),
                       lambda: R.global_avg_pool2d_forward(x.astype(np.float64))),
        "max": (lambda: _C.max_pool2d_forward(x, *args), lambda: R.max_pool2d_forward(x, *args)),
        "avg": (lambda: _C.avg_pool2d_forward(x, *args),
                lambda: R.avg_pool2d_forward(x.astype(np.float64), *args)),
    }


@pytest.mark.parametrize("h,w,c", CASES)
def test_batch1_pooling_on_the_item_team(two_threads, h, w, c):
    rng = np.random.default_rng(h * w + c)
    x = rng.standard_normal((1, h, w, c)).astype(np.float32)
    x[0, h // 2, w // 3, c - 1] = np.nan  # NaN pools to NaN in every output that covers it
    for name, (run, ref) in _runs(x).items():
        _C._threads_used()
        got = run()
        assert _C._threads_used() == 2, name
        want = ref()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        assert np.isnan(got).any(), name
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=name)
        fastconv.set_num_threads(1)
        try:
            one = run()
        finally:
            fastconv.set_num_threads(2)
        np.testing.assert_array_equal(got, one, err_msg=name)
