"""Two threads evaluating (or predicting with) one model at the same time each get their own
results: evaluate keeps its metric state per call. fit refuses to overlap another thread's
fit, evaluate or predict on the same model, and they refuse to overlap its fit."""
import sys
import threading

import numpy as np
import pytest

import fastconv as fc
from fastconv import layers as L
from fastconv import models


@pytest.fixture
def fast_switching():
    # Switch threads every 10 µs (default 5 ms), so that the two calls really interleave
    # batch by batch instead of one finishing within its time slice.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def _model_and_data():
    fc.set_seed(3)
    model = models.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(3)])
    model.compile("sgd", fc.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    x = np.random.default_rng(0).normal(size=(600, 8, 8, 1)).astype(np.float32)
    pred = model.predict(x, verbose=0).argmax(-1)
    right = pred.copy()
    right[:30] = (right[:30] + 1) % 3          # accuracy 0.95
    wrong = (pred + 1) % 3
    wrong[:6] = pred[:6]                       # accuracy 0.01
    return model, x, right, wrong


def _in_two_threads(fn_a, fn_b, repeats=3):
    """Run fn_a and fn_b together `repeats` times, released at once by a Barrier."""
    results, errors = {"a": [], "b": []}, []
    barrier = threading.Barrier(2)

    def run(key, fn):
        try:
            for _ in range(repeats):
                barrier.wait()
                results[key].append(fn())
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            barrier.abort()
    threads = [threading.Thread(target=run, args=("a", fn_a)), threading.Thread(target=run, args=("b", fn_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results["a"], results["b"]


def test_concurrent_evaluate_gives_each_call_its_own_metrics(fast_switching):
    model, x, right, wrong = _model_and_data()
    alone_right = model.evaluate(x, right, batch_size=16, verbose=0, return_dict=True)
    alone_wrong = model.evaluate(x, wrong, batch_size=16, verbose=0, return_dict=True)
    assert alone_right["accuracy"] == pytest.approx(0.95) and alone_wrong["accuracy"] == pytest.approx(0.01)
    got_right, got_wrong = _in_two_threads(
        lambda: model.evaluate(x, right, batch_size=16, verbose=0, return_dict=True),
        lambda: model.evaluate(x, wrong, batch_size=16, verbose=0, return_dict=True))
    assert got_right == [alone_right] * 3 and got_wrong == [alone_wrong] * 3
    # model.metrics reports the last finished call's values, as Keras's do
    assert model.metrics[1].result() in (alone_right["accuracy"], alone_wrong["accuracy"])


def test_model_metrics_report_the_last_call():
    model, x, right, wrong = _model_and_data()
    model.evaluate(x, wrong, batch_size=64, verbose=0)
    assert model.metrics[1].result() == pytest.approx(0.01)
    assert model.metrics_names == ["loss", "accuracy"]


def test_concurrent_predict_matches_single_threaded(fast_switching):
    model, x, _, _ = _model_and_data()
    xa, xb = x[:300], x[300:] * 3.0
    alone_a, alone_b = model.predict(xa, batch_size=16, verbose=0), model.predict(xb, batch_size=16, verbose=0)
    got_a, got_b = _in_two_threads(lambda: model.predict(xa, batch_size=16, verbose=0),
                                   lambda: model.predict(xb, batch_size=16, verbose=0))
    for a, b in zip(got_a, got_b):
        np.testing.assert_array_equal(a, alone_a)
        np.testing.assert_array_equal(b, alone_b)


def test_first_calls_of_an_unbuilt_model_build_it_once(fast_switching):
    # Without a lock around building, both threads built some layers (about 1 model in 3
    # got 6 or 8 weights and two different outputs).
    fc.set_seed(4)
    x = np.ones((4, 6, 6, 1), np.float32)
    for _ in range(10):
        model = models.Sequential([L.Conv2D(2, 3), L.Flatten(), L.Dense(2)])  # builds on its first call
        a, b = _in_two_threads(lambda: model.predict(x, verbose=0), lambda: model.predict(x, verbose=0), repeats=1)
        assert len(model.weights) == 4
        np.testing.assert_array_equal(a[0], b[0])


def test_fit_refuses_to_overlap_another_threads_evaluate():
    model, x, right, _ = _model_and_data()
    started, release = threading.Event(), threading.Event()

    class Hold(fc.callbacks.Callback):
        def on_test_batch_begin(self, batch, logs=None):
            started.set()
            release.wait(10)

    t = threading.Thread(target=lambda: model.evaluate(x[:16], right[:16], verbose=0, callbacks=[Hold()]))
    t.start()
    try:
        assert started.wait(10)
        with pytest.raises(RuntimeError, match="fit cannot start while .*evaluate.* another thread"):
            model.fit(x[:16], right[:16], verbose=0)
    finally:
        release.set()
        t.join()
    model.fit(x[:16], right[:16], verbose=0)  # once the evaluation is over, fit runs


def test_evaluate_and_predict_refuse_to_overlap_another_threads_fit():
    model, x, right, _ = _model_and_data()
    started, release = threading.Event(), threading.Event()

    class Hold(fc.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            started.set()
            release.wait(10)

        def on_epoch_end(self, epoch, logs=None):  # the fitting thread may evaluate itself
            model.evaluate(x[:16], right[:16], verbose=0)

    t = threading.Thread(target=lambda: model.fit(x[:16], right[:16], verbose=0, callbacks=[Hold()]))
    t.start()
    try:
        assert started.wait(10)
        with pytest.raises(RuntimeError, match="evaluate cannot start while fit runs .*another thread"):
            model.evaluate(x[:16], right[:16], verbose=0)
        with pytest.raises(RuntimeError, match="predict cannot start while fit runs"):
            model.predict(x[:16], verbose=0)
    finally:
        release.set()
        t.join()
    model.predict(x[:16], verbose=0)
