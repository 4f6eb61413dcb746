"""Whether a "multithreaded" test case really runs on several threads.

Each kernel keeps small work on one thread (kParallelGrain, kParallelMacs, ...), so a test
with small shapes checks the serial path whatever set_num_threads says. The test hook
_C._threads_used() returns the most OpenMP threads any parallel region of the native kernels
ran with since its previous call (0: no region ran).
"""
import contextlib

from fastconv import _C


class Used:
    count = None  # set when the with block ends


@contextlib.contextmanager
def threads_used():
    """with threads_used() as used: <kernel calls>  ->  used.count after the block."""
    _C._threads_used()  # forget earlier calls
    used = Used()
    yield used
    used.count = _C._threads_used()


def conv_pass_threads(x, wt, strides, pads, dilation, groups):
    """{pass: threads its regions ran with} for the three conv passes of _C on x, wt. No bias:
    the bias gradient's own (parallel) reduction would hide a serial weight pass."""
    args = (strides, pads, dilation, groups)
    used = {}
    with threads_used() as u:
        y = _C.conv2d_forward(x, wt, None, *args)
    used["forward"] = u.count
    with threads_used() as u:
        _C.conv2d_backward_data(y, wt, x.shape, *args)
    used["backward_data"] = u.count
    with threads_used() as u:
        _C.conv2d_backward_weights(y, x, wt.shape, *args, False)
    used["backward_weights"] = u.count
    return used
