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


def get_state():
    """The seed and every host stream's bit-generator state, as JSON-compatible data (for
    files: the CLI's resume state). Device streams are not included."""
    return {"seed": _seed, "streams": {name: g.bit_generator.state for name, g in _streams.items()}}


def set_state(state):
    """Continue every host stream where `get_state()` left it (ValueError on a malformed state)."""
    global _seed
    try:
        seed, streams = state["seed"], state["streams"]
        restored = {}
        for name, st in streams.items():
            # Only the generator default_rng makes: a file cannot name an arbitrary class.
            if not isinstance(st, dict) or st.get("bit_generator") != "PCG64":
                raise ValueError(f"stream {name!r} is not a PCG64 state")
            bit = np.random.PCG64()
            bit.state = st
            restored[str(name)] = np.random.Generator(bit)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"malformed random state: {e}") from None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"malformed random state: seed {seed!r}")
    _seed = seed
    _streams.clear()
    _streams.update(restored)
    _device_streams.clear()


def layer_generator(layer, stream, on_device=False):
    """The Generator a random layer (Dropout, GaussianNoise, Random*) draws from: its own,
    made once from `layer.seed`, or else the shared `stream` (looked up per call, since
    set_seed replaces it). on_device: a CuPy Generator, so masks and noise for device inputs
    are drawn there (no host->device copy per step). The layer keeps its own generators in
    `_rng` / `_device_rng`."""
    if on_device:
        if layer.seed is None:
            return device_generator(stream)
        if getattr(layer, "_device_rng", None) is None:
            import cupy
            layer._device_rng = cupy.random.default_rng(layer.seed)
        return layer._device_rng
    if layer.seed is None:
        return generator(stream)
    if getattr(layer, "_rng", None) is None:
        layer._rng = np.random.default_rng(layer.seed)
    return layer._rng
