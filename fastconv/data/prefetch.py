"""Prefetcher: runs an iterator ahead of its consumer on one background thread, a bounded
number of items ahead.

Why the care: the consumer may stop at any moment (a ``break``, an exception, Ctrl-C), and
then the thread must end too, not block forever on a full queue or keep decoding images.
The worker only ever waits with a timeout and checks a stop flag; the consumer waits with a
timeout too, so a KeyboardInterrupt reaches the main thread while it waits. An exception in
the worker is handed to the consumer and raised there, never lost with the thread.
"""
import queue
import threading

_POLL_S = 0.05  # how often a waiting side looks at the stop flag / pending signals


class Prefetcher:
    """Iterate over `source` (an iterator) with up to `depth` items made ahead on a thread.

    Use it as an iterator; ``close()`` (also called at exhaustion, on an error, and when the
    object is collected) stops and joins the worker and closes `source` on the worker's side.
    """
    _DONE = object()

    def __init__(self, source, depth=1, name="fastconv-prefetch"):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"prefetch depth must be a positive int, got {depth!r}")
        self._q = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(source,), daemon=True, name=name)
        self._thread.start()

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, source):
        try:
            for item in source:
                if not self._put(item):
                    return
            self._put((self._DONE, None))
        except BaseException as e:  # hand the error to the consumer instead of losing it
            self._put((self._DONE, e))
        finally:
            close = getattr(source, "close", None)
            if close is not None:  # stops what the source runs (a map's thread pool)
                close()

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            try:
                item = self._q.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._q.empty():
                    self.close()
                    raise StopIteration from None
        if isinstance(item, tuple) and len(item) == 2 and item[0] is self._DONE:
            self.close()
            if item[1] is not None:
                raise item[1]
            raise StopIteration
        return item

    def close(self):
        """Stop the worker and wait for it (it notices within a poll interval)."""
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __del__(self):
        self._stop.set()
