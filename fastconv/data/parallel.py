"""Ordered parallel map on a thread pool, for ``Dataset.map(num_parallel_calls=...)``.

Threads (not processes) because the heavy work -- image decoding, resizing, NumPy -- releases
the GIL. Results come back in input order (tf.data's ``deterministic=True``), at most
``2 * workers`` items ahead of the consumer, so memory stays bounded. When the consumer
stops early (break, exception, Ctrl-C) the generator's ``finally`` cancels what is queued and
joins the pool: no worker outlives its iterator. Waits poll with a timeout, so a
KeyboardInterrupt reaches a main thread that is waiting for a result.
"""
import collections
import concurrent.futures
import os

_POLL_S = 0.05


def default_workers():
    """The thread count AUTOTUNE picks: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _result(future):
    while True:
        try:
            return future.result(timeout=_POLL_S)
        except concurrent.futures.TimeoutError:
            continue


def ordered_map(fn, source, workers, name="fastconv-data-map"):
    """Yield ``fn(item)`` for every item of the iterator `source`, in order, `workers` at a time."""
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=name)
    pending = collections.deque()
    try:
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(source, "close", None)
        if close is not None:
            close()
