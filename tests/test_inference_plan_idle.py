"""A multi-thread plan run after the team was idle (engine/inference.py, _IDLE_S): it runs on
the team or on one thread, whichever its own cold runs measured faster, and the thread knob
is back where it was afterwards (also when a step raises).

Cold calls are forced by setting _IDLE_S below zero (every call then counts as after a
pause); which thread count a call used is read inside a step with fastconv.get_num_threads().
Outputs: against the plan-off predict at 2 threads, rtol 1e-5 plus atol 1e-5 times the
output's magnitude (the kernels' results at 1 and 2 threads differ at most by float32
reordering; the fold is the same in both).
"""
import numpy as np
import pytest

import fastconv
from fastconv.engine import inference
from fastconv.models import zoo


@pytest.fixture
def two_threads(monkeypatch):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    monkeypatch.setattr(inference, "_IDLE_S", -1.0)  # every call is a cold one
    yield
    fastconv.set_num_threads(before)


def _model_and_input(seed=0):
    fastconv.set_seed(seed)
    model = zoo.resnet18((32, 32, 3), classes=10, stem="cifar")
    x = np.random.default_rng(seed).standard_normal((1, 32, 32, 3)).astype(np.float32)
    return model, x


def _plan_of(model):
    return model._inference_last[2]


def _spy_threads(plan):
    """Wrap the plan's first step so that each run records the thread knob it ran with."""
    seen = []
    (first, *rest), clear = plan.flat[0]

    def step(regs):
        seen.append(fastconv.get_num_threads())
        first(regs)
    plan.flat[0] = ((step, *rest), clear)
    return seen


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5 * scale)


def test_cold_calls_try_the_team_then_one_thread_with_the_same_outputs(two_threads):
    model, x = _model_and_input()
    inference.set_inference_plan(False)
    try:
        ref = np.asarray(model.predict_on_batch(x))
    finally:
        inference.set_inference_plan(True)
    model.predict_on_batch(x)  # builds the plan (its first run prepares the steps)
    plan = _plan_of(model)
    seen = _spy_threads(plan)
    outs = [np.asarray(model.predict_on_batch(x)) for _ in range(3)]
    assert seen[:2] == [2, 1], seen  # the team first, then one thread, each timed
    team, one, _ = plan._cold
    assert team > 0 and one > 0
    assert seen[2] == (1 if one < team else 2)
    assert fastconv.get_num_threads() == 2
    for out in outs:
        _close(out, ref)


def test_the_faster_cold_choice_is_kept_and_the_other_retried(two_threads):
    model, x = _model_and_input(1)
    model.predict_on_batch(x)
    plan = _plan_of(model)
    seen = _spy_threads(plan)
    # One thread "measured" far faster: every cold call keeps it, but the _COLD_REPROBE-th
    # tries the team again (and its new timing replaces the old).
    plan._cold = [1e9, 1e-9, 0]
    for _ in range(inference._COLD_REPROBE):
        model.predict_on_batch(x)
    assert seen == [1] * (inference._COLD_REPROBE - 1) + [2], seen
    assert plan._cold[0] < 0.51e9  # the new timing averaged in
    assert fastconv.get_num_threads() == 2


def test_warm_calls_run_on_the_team(monkeypatch):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    try:
        monkeypatch.setattr(inference, "_IDLE_S", 1e9)  # never idle long enough
        model, x = _model_and_input(2)
        model.predict_on_batch(x)
        plan = _plan_of(model)
        plan._cold = [1e9, 1e-9, 0]  # one thread would win a cold call
        seen = _spy_threads(plan)
        for _ in range(3):
            model.predict_on_batch(x)
        assert seen == [2, 2, 2]
    finally:
        fastconv.set_num_threads(before)


def test_the_thread_knob_is_restored_when_a_step_raises(two_threads):
    model, x = _model_and_input(3)
    model.predict_on_batch(x)
    plan = _plan_of(model)
    plan._cold = [1e9, 1e-9, 0]  # the next cold call runs on one thread
    (first, *rest), clear = plan.flat[0]

    def boom(regs):
        assert fastconv.get_num_threads() == 1
        raise RuntimeError("step failed")
    plan.flat[0] = ((boom, *rest), clear)
    with pytest.raises(RuntimeError, match="step failed"):
        model.predict_on_batch(x)
    assert fastconv.get_num_threads() == 2


def test_one_thread_knob_takes_no_team_path(monkeypatch):
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(1)
    try:
        monkeypatch.setattr(inference, "_IDLE_S", -1.0)
        model, x = _model_and_input(4)
        model.predict_on_batch(x)
        model.predict_on_batch(x)
        assert "_cold" not in _plan_of(model).__dict__  # no cold bookkeeping at 1 thread
        assert fastconv.get_num_threads() == 1
    finally:
        fastconv.set_num_threads(before)
