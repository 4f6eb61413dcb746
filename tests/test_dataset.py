"""fastconv.data.Dataset: every method against a plain-Python reference iteration of the same
data, tf.data's cardinality rules, seeding, the file cache, threads, and fit/evaluate/predict."""
import gc
import itertools
import json
import os
import signal
import threading
import time
import weakref

import numpy as np
import pytest

import fastconv
from fastconv.data import (AUTOTUNE, INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Dataset,
                           TensorSpec)


def _eq(a, b):
    """Structure-and-value equality of two elements."""
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    return np.asarray(a).shape == np.asarray(b).shape and np.array_equal(a, b)


def _same(ds, reference):
    got = list(ds)
    assert len(got) == len(reference), (len(got), len(reference))
    for g, r in zip(got, reference):
        assert _eq(g, r), (g, r)


X = np.arange(20, dtype=np.float32).reshape(10, 2)
Y = np.arange(10, dtype=np.int64) % 3


def test_from_tensor_slices_array_tuple_dict():
    _same(Dataset.from_tensor_slices(X), [X[i] for i in range(10)])
    _same(Dataset.from_tensor_slices((X, Y)), [(X[i], Y[i]) for i in range(10)])
    _same(Dataset.from_tensor_slices({"a": X, "b": Y}), [{"a": X[i], "b": Y[i]} for i in range(10)])
    # a list is one array, as in tf.data
    _same(Dataset.from_tensor_slices([[1, 2], [3, 4]]), [np.array([1, 2]), np.array([3, 4])])
    assert len(Dataset.from_tensor_slices(X)) == 10
    with pytest.raises(ValueError, match=r"same first dimension.*\(10, 2\).*\(3,\)"):
        Dataset.from_tensor_slices((X, Y[:3]))
    with pytest.raises(ValueError, match="scalar"):
        Dataset.from_tensor_slices(np.float32(1))


def test_from_generator_range_zip():
    ds = Dataset.from_generator(lambda: ((i, i * i) for i in range(4)),
                                output_signature=(TensorSpec((), np.int32), TensorSpec((), np.float64)))
    _same(ds, [(np.int32(i), np.float64(i * i)) for i in range(4)])
    assert list(ds)[1][0].dtype == np.int32
    _same(ds, [(np.int32(i), np.float64(i * i)) for i in range(4)])  # called afresh each pass
    assert ds.cardinality() == UNKNOWN_CARDINALITY
    with pytest.raises(TypeError, match="length is unknown"):
        len(ds)
    _same(Dataset.range(2, 9, 3), [2, 5, 8])
    z = Dataset.zip((Dataset.range(5), Dataset.from_tensor_slices(Y)))
    _same(z, [(i, Y[i]) for i in range(5)])
    assert len(z) == 5
    with pytest.raises(TypeError, match="callable"):
        Dataset.from_generator([1, 2])


def test_map_sequential_and_parallel_keep_order():
    ref = [(X[i] * 2, Y[i] + 1) for i in range(10)]
    ds = Dataset.from_tensor_slices((X, Y))
    _same(ds.map(lambda x, y: (x * 2, y + 1)), ref)
    for calls in (1, 3, AUTOTUNE):
        slow = ds.map(lambda x, y: (time.sleep(0.002 * (int(y) % 2)) or x * 2, y + 1), num_parallel_calls=calls)
        _same(slow, ref)
    # a dict element is passed as one argument
    _same(Dataset.from_tensor_slices({"a": Y}).map(lambda d: d["a"] * 10), [Y[i] * 10 for i in range(10)])
    with pytest.raises(ValueError, match="num_parallel_calls"):
        ds.map(lambda x, y: x, num_parallel_calls=0)


def test_map_error_reaches_the_consumer_from_a_worker():
    def boom(x):
        if x == 3:
            raise ZeroDivisionError("element 3")
        return x
    with pytest.raises(ZeroDivisionError, match="element 3"):
        list(Dataset.range(8).map(boom, num_parallel_calls=2).prefetch(2))


def test_batch_and_unbatch():
    ds = Dataset.from_tensor_slices((X, Y))
    ref = [(X[i:i + 4], Y[i:i + 4]) for i in range(0, 10, 4)]
    _same(ds.batch(4), ref)                      # the in-memory fast path
    _same(ds.map(lambda x, y: (x, y)).batch(4), ref)  # the stacking path
    _same(ds.batch(4, drop_remainder=True), ref[:2])
    _same(ds.map(lambda x, y: (x, y)).batch(4, drop_remainder=True), ref[:2])
    assert (len(ds.batch(4)), len(ds.batch(4, drop_remainder=True))) == (3, 2)
    _same(ds.batch(4).unbatch(), [(X[i], Y[i]) for i in range(10)])
    assert ds.batch(4).unbatch().cardinality() == UNKNOWN_CARDINALITY
    ragged = Dataset.from_generator(lambda: iter([np.zeros(2), np.zeros(3)]))
    with pytest.raises(ValueError, match=r"different shapes \[\(2,\), \(3,\)\]"):
        list(ragged.batch(2))
    with pytest.raises(ValueError, match="batch_size"):
        ds.batch(0)


def _reference_shuffle(items, buffer_size, rng):
    """tf.data's buffer algorithm written out: fill, then emit a random slot and refill it."""
    items = list(items)
    buf, rest = items[:buffer_size], items[buffer_size:]
    if len(buf) < buffer_size:
        return [buf[i] for i in rng.permutation(len(buf))]
    out = []
    for e in rest:
        i = int(rng.integers(len(buf)))
        out.append(buf[i])
        buf[i] = e
    return out + [buf[i] for i in rng.permutation(len(buf))]


def test_shuffle_buffer_semantics_and_seeds():
    n = 50
    ds = Dataset.range(n).map(lambda i: i)  # not slices: the buffer algorithm itself
    for buf in (1, 7, 50, 80):
        sh = ds.shuffle(buf, seed=5)
        first, second = [int(v) for v in sh], [int(v) for v in sh]
        assert first == [int(v) for v in _reference_shuffle(range(n), buf, np.random.default_rng([5, 0]))]
        assert second == [int(v) for v in _reference_shuffle(range(n), buf, np.random.default_rng([5, 1]))]
        assert sorted(first) == list(range(n))
    assert [int(v) for v in ds.shuffle(1, seed=5)] == list(range(n))  # a buffer of 1 keeps the order
    # a small buffer only mixes nearby elements: element i never appears before position i - buf
    out = [int(v) for v in ds.shuffle(4, seed=1)]
    assert all(out.index(v) >= v - 4 for v in range(n))
    fixed = ds.shuffle(n, seed=3, reshuffle_each_iteration=False)
    assert [int(v) for v in fixed] == [int(v) for v in fixed]
    # unseeded: fastconv.set_seed repeats the orders
    fastconv.set_seed(11)
    a = [[int(v) for v in Dataset.range(n).shuffle(n)] for _ in range(2)]
    fastconv.set_seed(11)
    b = [[int(v) for v in Dataset.range(n).shuffle(n)] for _ in range(2)]
    assert a == b and a[0] != a[1]
    # slices + full-buffer shuffle + batch takes the shared batching path, same numbers as the buffer path
    fast = [b.tolist() for b in Dataset.range(n).shuffle(n, seed=9).batch(8)]
    slow = [b.tolist() for b in Dataset.range(n).map(lambda i: i).shuffle(n, seed=9).batch(8)]
    assert fast == slow


def test_repeat_take_skip_and_cardinality():
    ds = Dataset.range(5)
    _same(ds.repeat(3), [i for _ in range(3) for i in range(5)])
    assert len(ds.repeat(3)) == 15
    inf = ds.repeat()
    assert inf.cardinality() == INFINITE_CARDINALITY and inf.cardinality().numpy() == -1
    with pytest.raises(TypeError, match="infinite"):
        len(inf)
    _same(inf.take(12), [i % 5 for i in range(12)])
    assert len(inf.take(12)) == 12
    _same(ds.skip(2), [2, 3, 4])
    _same(ds.take(-1), list(range(5)))
    _same(ds.skip(-1), [])
    assert (len(ds.take(9)), len(ds.skip(9)), len(ds.skip(-1))) == (5, 0, 0)
    assert inf.skip(3).cardinality() == INFINITE_CARDINALITY
    assert ds.filter(lambda i: i % 2 == 0).cardinality() == UNKNOWN_CARDINALITY
    _same(ds.filter(lambda i: i % 2 == 0), [0, 2, 4])
    assert Dataset.range(0).repeat().cardinality() == 0
    assert list(Dataset.range(0).repeat()) == []  # empty forever is empty, not a hang
    assert bool(inf)


def test_cache_in_memory_replays_and_is_read_only():
    calls = []
    ds = Dataset.range(6).map(lambda i: (calls.append(int(i)), np.full(3, i))[1]).cache()
    first, second = list(ds), list(ds)
    assert calls == list(range(6))  # the second pass came from the cache
    _same(second, first)
    with pytest.raises(ValueError, match="read-only"):
        second[0][0] = 7
    # cache after shuffle replays the first order; shuffle after cache reshuffles
    after = Dataset.range(30).shuffle(30, seed=2).cache()
    assert [int(v) for v in after] == [int(v) for v in after]
    before = Dataset.range(30).cache().shuffle(30, seed=2)
    assert [int(v) for v in before] != [int(v) for v in before]
    # a partial pass does not fill the cache
    calls.clear()
    ds2 = Dataset.range(4).map(lambda i: calls.append(int(i)) or i).cache()
    list(ds2.take(2))
    list(ds2)
    list(ds2)
    assert calls == [0, 1, 0, 1, 2, 3]


def test_cache_to_files_is_data_only_and_reused(tmp_path):
    prefix = tmp_path / "cache" / "train"
    (tmp_path / "cache").mkdir()
    x = np.random.default_rng(0).random((9, 4, 4, 1), dtype=np.float32)
    names = np.array([f"f{i}.png" for i in range(9)])
    calls = []
    ds = Dataset.from_tensor_slices({"x": x, "name": names}).map(lambda d: calls.append(1) or d).batch(4)
    cached = ds.cache(str(prefix))
    ref = [{"x": x[i:i + 4], "name": names[i:i + 4]} for i in range(0, 9, 4)]
    _same(cached, ref)
    assert len(calls) == 9
    index = json.loads((tmp_path / "cache" / "train.index.json").read_text())
    assert index["format"] == "fastconv-dataset-cache"
    for shard in index["shards"]:
        with np.load(tmp_path / "cache" / shard["file"], allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)
    _same(cached, ref)
    # replayed batches are freed as soon as the consumer drops them (no reference cycle keeps
    # them for the cyclic collector: resident memory stays at a few batches)
    gc.disable()
    try:
        alive = [weakref.ref(b["x"]) for b in cached]
    finally:
        gc.enable()
    assert len(alive) == 3 and not any(r() is not None for r in alive)
    _same(ds.cache(str(prefix)), ref)  # a new Dataset finds the complete cache
    assert len(calls) == 9
    assert not [p for p in os.listdir(tmp_path / "cache") if p.endswith(".tmp")]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ds.cache(str(tmp_path / "nope" / "c"))
    (tmp_path / "cache" / "bad.index.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        list(ds.cache(str(tmp_path / "cache" / "bad")))


def test_prefetch_and_as_numpy_iterator_and_element_spec():
    ds = Dataset.from_tensor_slices((X, Y)).batch(4)
    _same(ds.prefetch(2), list(ds))
    _same(ds.prefetch(AUTOTUNE), list(ds))
    assert ds.prefetch(0) is ds
    assert [int(v) for v in Dataset.range(3).as_numpy_iterator()] == [0, 1, 2]
    spec = ds.prefetch(1).element_spec
    assert spec == (TensorSpec((None, 2), np.float32), TensorSpec((None,), np.int64))
    assert Dataset.from_tensor_slices({"a": X}).batch(4, drop_remainder=True).element_spec == \
        {"a": TensorSpec((4, 2), np.float32)}


def _threads_settle(baseline, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if threading.active_count() <= baseline:
            return True
        time.sleep(0.02)
    return False


def test_early_stop_joins_worker_threads():
    baseline = threading.active_count()
    ds = Dataset.range(10 ** 6).map(lambda i: i * 2, num_parallel_calls=4).prefetch(4)
    for i, v in enumerate(ds):
        if i == 20:
            break
    assert _threads_settle(baseline), [t.name for t in threading.enumerate()]
    assert [int(v) for v in ds.take(3)] == [0, 2, 4]
    assert _threads_settle(baseline)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_ctrl_c_during_iteration_stops_worker_threads():
    """A real SIGINT to the main thread while it waits on the pipeline: KeyboardInterrupt
    comes out of the loop and every worker thread ends."""
    baseline = threading.active_count()
    main = threading.main_thread().ident
    sent = threading.Event()
    count = itertools.count()

    def work(i):
        if next(count) == 50:
            sent.set()
            signal.pthread_kill(main, signal.SIGINT)
        time.sleep(0.001)
        return i

    ds = Dataset.range(10).repeat().map(work, num_parallel_calls=3).prefetch(2)
    # a shell that starts the tests in the background may have set SIGINT to "ignore"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in ds:
                pass
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sent.is_set()
    assert _threads_settle(baseline), [t.name for t in threading.enumerate()]


def _tiny_model():
    m = fastconv.Sequential([fastconv.layers.Input((2,)), fastconv.layers.Dense(3)])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_fit_evaluate_predict_accept_datasets():
    fastconv.set_seed(0)
    m = _tiny_model()
    train = Dataset.from_tensor_slices((X, Y)).shuffle(10, seed=0).batch(4)
    hist = m.fit(train, epochs=2, validation_data=Dataset.from_tensor_slices((X, Y)).batch(5), verbose=0)
    assert len(hist.history["loss"]) == 2 and "val_loss" in hist.history
    # evaluate on a Dataset equals evaluate on the same arrays
    ev_ds = m.evaluate(Dataset.from_tensor_slices((X, Y)).batch(4), verbose=0, return_dict=True)
    ev_np = m.evaluate(X, Y, batch_size=4, verbose=0, return_dict=True)
    assert ev_ds["loss"] == pytest.approx(ev_np["loss"], rel=1e-6)
    np.testing.assert_allclose(m.predict(Dataset.from_tensor_slices(X).batch(3), verbose=0),
                               m.predict(X, verbose=0), rtol=1e-6)
    # an infinite dataset needs steps_per_epoch; with it, the stream continues across epochs
    inf = Dataset.from_tensor_slices((X, Y)).batch(5).repeat()
    with pytest.raises(ValueError, match="infinite Dataset"):
        m.fit(inf, epochs=1, verbose=0)
    seen = []
    counted = Dataset.from_tensor_slices((X, Y)).batch(5).repeat().map(lambda x, y: seen.append(1) or (x, y))
    m.fit(counted, epochs=3, steps_per_epoch=3, verbose=0)
    assert len(seen) == 9
    with pytest.raises(ValueError, match="y and sample_weight must be None"):
        m.fit(train, Y, verbose=0)


def _resident_mib():
    """Current resident set size from /proc/self/statm (Linux; no psutil needed)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_cache_to_files_keeps_resident_memory_bounded(tmp_path):
    # 64 batches of 4 MiB (256 MiB in all) made on the fly, so only the cache could hold them.
    # Bound: the cache writes each element into its shard as it passes and reads one array at
    # a time back, so the resident set grows by a few batches (~12 MiB measured); 40 MiB is
    # ten batches of slack for the allocator and still far under the 256 MiB that keeping the
    # batches (a memory cache, a shard buffered whole, or a leak) would take.
    batches, batch_shape = 64, (16, 128, 128, 4)
    ds = Dataset.range(batches).map(lambda i: np.full(batch_shape, i, np.float32)).cache(str(tmp_path / "c"))
    gc.collect()
    base = _resident_mib()
    for epoch in range(2):  # the writing pass, then the reading pass
        peak, seen = 0.0, 0
        for i, b in enumerate(ds):
            assert b.shape == batch_shape and b[0, 0, 0, 0] == i and b[-1, -1, -1, -1] == i
            seen += 1
            peak = max(peak, _resident_mib() - base)
            del b
        assert seen == batches
        assert peak < 40, f"pass {epoch}: resident memory grew {peak:.0f} MiB over 256 MiB of data"
