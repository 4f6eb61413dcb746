"""Array assembly in the kernel interface: concatenation along the channel axis."""
import numpy as np


def check_concat_shapes(arrays):
    """ValueError unless there is at least one array and all agree on every axis but the last
    (shared with the cuda backend)."""
    if not arrays:
        raise ValueError("arrays must hold at least one array")
    for i, a in enumerate(arrays):
        if a.ndim < 1 or a.shape[:-1] != arrays[0].shape[:-1]:
            raise ValueError(f"arrays[{i}] has shape {a.shape}: every array must match arrays[0] "
                             f"{arrays[0].shape} on all axes but the last")


def concat_last(arrays):
    """Arrays that agree on every axis but the last -> their concatenation along it."""
    arrays = [np.asarray(a) for a in arrays]
    check_concat_shapes(arrays)
    return np.concatenate(arrays, axis=-1)
