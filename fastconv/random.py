"""Seeding. Every random draw in fastconv comes from a named numpy Generator stream
(init, dropout, shuffle, augment, ...), all derived from one seed, so `set_seed(s)` makes
weights, batches, dropout masks and augmentations repeat exactly.

>>> from fastconv import random as fr
>>> fr.set_seed(1); a = fr.generator("init").random()
>>> fr.set_seed(1); a == fr.generator("init").random()
True
"""
import zlib

import numpy as np

_seed = None
_streams = {}
_device_streams = {}


def set_seed(seed):
    """Re-seed every stream. `seed` is a non-negative int (None: fresh OS entropy)."""
    global _seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    _seed = None if seed is None else int(seed)
    _streams.clear()
    _device_streams.clear()


def get_seed():
    return _seed


def generator(stream="default"):
    """The numpy Generator of a named stream (created on first use from the global seed)."""
    g = _streams.get(stream)
    if g is None:
        # crc32 gives every stream name a stable, distinct sub-seed (Python's hash() is salted).
        entropy = None if _seed is None else [_seed, zlib.crc32(stream.encode())]
        g = _streams[stream] = np.random.default_rng(entropy)
    return g


def device_generator(stream="default"):
    """A CuPy Generator for draws made on the GPU (dropout masks of device arrays), seeded
    from the host stream of the same name: set_seed repeats its draws too, though they are
    not the host stream's numbers."""
    g = _device_streams.get(stream)
    if g is None:
        import cupy
        g = _device_streams[stream] = cupy.random.default_rng(int(generator(stream).integers(2 ** 63)))
    return g
