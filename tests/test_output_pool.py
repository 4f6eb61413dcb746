"""The output pool (csrc/bindings/output_pool.h): a freed kernel output of 4 KiB or more is
handed to a later output of half to all of its byte size, the most recently freed such block
first; the cache stays within its limit, evicting the least recently freed blocks; outputs
still hold the kernel's values."""
import numpy as np
import pytest

from fastconv import _C, config
from fastconv.reference import activation as ref_act


def _address(a):
    return a.__array_interface__["data"][0]


def _relu(x):
    return _C.bias_act_forward(x, np.zeros(x.shape[-1], np.float32), "relu")


@pytest.fixture
def pool_limit():
    """Restores the process's limit (and empties the cache) after the test."""
    before = config.output_pool_stats()["limit"]
    yield config.set_output_pool_limit
    config.set_output_pool_limit(0)
    config.set_output_pool_limit(before)


def test_freed_output_serves_the_next_of_its_size(pool_limit):
    pool_limit(1 << 30)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 17, 19, 8)).astype(np.float32)  # 31 KiB: pooled
    y = _relu(x)
    addr = _address(y)
    del y
    hits = config.output_pool_stats()["hits"]
    y2 = _relu(-x)
    assert _address(y2) == addr
    assert config.output_pool_stats()["hits"] == hits + 1
    np.testing.assert_array_equal(y2, np.maximum(-x, 0))
    # a live output is never handed out twice
    y3 = _relu(x)
    assert _address(y3) != _address(y2)
    np.testing.assert_array_equal(y3, np.maximum(x, 0))


def test_limit_zero_keeps_nothing(pool_limit):
    pool_limit(0)
    x = np.ones((4, 32, 32, 16), np.float32)
    for _ in range(3):
        _relu(x)
    stats = config.output_pool_stats()
    assert stats["cached_bytes"] == 0 and stats["cached_blocks"] == 0


def test_cache_stays_within_limit_and_evicts_oldest(pool_limit):
    kib = 1024
    pool_limit(200 * kib)
    outs = [_relu(np.ones((1, n, 1024 // 4), np.float32)) for n in (64, 80, 96)]  # 64/80/96 KiB
    del outs[0]  # 64 KiB cached
    del outs[0]  # 80 KiB cached: 144 KiB
    assert config.output_pool_stats()["cached_bytes"] == 144 * kib
    del outs[0]  # 96 KiB: over 200, the 64 KiB block (the oldest) goes
    stats = config.output_pool_stats()
    assert stats["cached_bytes"] == 176 * kib and stats["cached_blocks"] == 2
    pool_limit(100 * kib)  # lowering the limit evicts at once: the 80 KiB block goes
    assert config.output_pool_stats()["cached_bytes"] == 96 * kib
    big = _relu(np.ones((1, 128, 256), np.float32))  # 128 KiB > limit: freed, never cached
    del big
    assert config.output_pool_stats()["cached_bytes"] == 96 * kib


def test_small_outputs_bypass_the_pool(pool_limit):
    pool_limit(1 << 30)
    before = config.output_pool_stats()
    y = _relu(np.ones((1, 2, 3, 4), np.float32))  # 96 bytes: numpy's own allocation
    del y
    after = config.output_pool_stats()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])


def test_reused_blocks_give_the_reference_results(pool_limit):
    """A model-like sequence of same-size outputs, repeated: every result matches the reference
    although each call after the first writes into blocks the last one freed."""
    pool_limit(1 << 30)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 15, 13, 24)).astype(np.float32)
    x[0, 3, 4, 5] = np.nan
    b = rng.standard_normal(24).astype(np.float32)
    want_y = ref_act.bias_act_forward(x, b, "relu")
    want_z = ref_act.bias_act_forward(want_y, -b, "relu")
    for _ in range(3):
        y = _C.bias_act_forward(x, b, "relu")
        z = _C.bias_act_forward(y, -b, "relu")
        np.testing.assert_allclose(y, want_y, rtol=1e-6, atol=1e-6)  # NaN where the reference has it
        np.testing.assert_allclose(z, want_z, rtol=1e-6, atol=1e-6)
        assert np.isnan(z[0, 3, 4, 5])
        del y, z


def test_limit_must_be_non_negative():
    with pytest.raises(ValueError, match="bytes must be >= 0"):
        config.set_output_pool_limit(-1)
    with pytest.raises(TypeError):
        _C.set_output_pool_limit("1GB")


def test_max_pool_argmax_reuses_its_block(pool_limit):
    """uint8 outputs (a max pool's argmax) come from the pool too."""
    from fastconv.reference import pool as ref_pool
    pool_limit(1 << 30)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 34, 30, 16)).astype(np.float32)  # argmax: 2*17*15*16 = 8 KiB
    args = ((2, 2), (2, 2), (0, 0, 0, 0))
    y, arg = _C.max_pool2d_forward_with_argmax(x, *args)
    addr = _address(arg)
    del y, arg
    hits = config.output_pool_stats()["hits"]
    y, arg = _C.max_pool2d_forward_with_argmax(x, *args)
    assert _address(arg) == addr and config.output_pool_stats()["hits"] == hits + 2
    want_y, want_arg = ref_pool.max_pool2d_forward_with_argmax(x, *args)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(arg, want_arg)


def _cols(kib):
    """An input whose relu output is `kib` KiB (rows of 1 KiB)."""
    return np.ones((1, kib, 256), np.float32)


def _fresh(pool_limit):
    pool_limit(0)  # empty: earlier tests' blocks would serve these requests
    pool_limit(1 << 30)


def test_most_recently_freed_block_of_the_size_comes_first(pool_limit):
    _fresh(pool_limit)
    a, b = _relu(_cols(64)), _relu(_cols(64))
    older, newer = _address(a), _address(b)
    del a, b  # a freed first, then b
    y = _relu(-_cols(64))
    assert _address(y) == newer  # not the oldest block of the size
    z = _relu(_cols(64))
    assert _address(z) == older
    np.testing.assert_array_equal(y, 0)
    np.testing.assert_array_equal(z, 1)


def test_a_block_serves_requests_of_half_to_all_its_size(pool_limit):
    _fresh(pool_limit)
    a, b = _relu(_cols(64)), _relu(_cols(96))
    addr_a, addr_b = _address(a), _address(b)
    del a, b  # cached: 64 KiB (older), 96 KiB (newer)
    hits, misses = config.output_pool_stats()["hits"], config.output_pool_stats()["misses"]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 48, 256)).astype(np.float32)
    x[0, 47, 255] = np.nan  # the last element of the request: NaN stays NaN in a larger block
    x[0, 0, 0] = np.inf
    y = _relu(x)  # 48 KiB: both fit [48, 96]; the newer, the 96 KiB block
    assert _address(y) == addr_b
    want = ref_act.bias_act_forward(x, np.zeros(256, np.float32), "relu")
    np.testing.assert_array_equal(y, want)
    assert np.isnan(y[0, 47, 255]) and np.isinf(y[0, 0, 0])
    small = _relu(_cols(31))  # 31 KiB: the 64 KiB block is more than twice as large, a new block
    assert _address(small) not in (addr_a, addr_b)
    z = _relu(_cols(33))  # 33 KiB: the 64 KiB block fits [33, 66]
    assert _address(z) == addr_a
    np.testing.assert_array_equal(z, 1)
    stats = config.output_pool_stats()
    assert (stats["hits"], stats["misses"]) == (hits + 2, misses + 1)
    del y  # a block goes back with its own size (96 KiB), not the request's
    assert config.output_pool_stats()["cached_bytes"] == 96 * 1024


def test_a_repeated_sequence_settles_on_a_fixed_set_of_blocks(pool_limit):
    """A forward-like chain whose sizes halve and double (as MobileNet's steps): after its
    first repeat no call allocates, and the cache holds the same blocks after every repeat."""
    _fresh(pool_limit)
    sizes = [64, 64, 128, 32, 64, 64, 16, 32, 32, 8, 16, 16]

    def forward():
        prev = prev2 = None
        for kib in sizes:
            y = _relu(_cols(kib))
            prev2, prev = prev, y  # each output lives for the next step (its consumer)
            del prev2
        return prev

    seen = []
    for _ in range(5):
        out = forward()
        np.testing.assert_array_equal(out, 1)
        del out
        stats = config.output_pool_stats()
        seen.append((stats["misses"], stats["cached_blocks"], stats["cached_bytes"]))
    assert seen[2] == seen[3] == seen[4]
    assert seen[1][0] == seen[4][0]  # no allocation after the first repeat
    assert seen[4][2] <= 2 * 128 * 1024 + 2 * 64 * 1024  # never more than the live peak, doubled
