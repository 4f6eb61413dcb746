"""A multi-thread plan run (engine/inference.py, _run_team): it runs on the team or on one
thread, whichever its own runs in the same state (cold: after _IDLE_S idle; warm) measured
faster, and the thread knob is back where it was afterwards (also when a step raises). With
_HOLD_TEAM, a team run holds the team keeper (threads.cpp) and releases it at its end: no
keeper thread spins and the process burns no CPU once predict has returned.

Cold calls are forced by setting _IDLE_S below zero (every call then counts as after a
pause), warm ones by setting it very large; which thread count a call used is read inside a
step with fastconv.get_num_threads().
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


def test_cold_calls_try_the_team_twice_then_one_thread_with_the_same_outputs(two_threads):
    model, x = _model_and_input()
    inference.set_inference_plan(False)
    try:
        ref = np.asarray(model.predict_on_batch(x))
    finally:
        inference.set_inference_plan(True)
    model.predict_on_batch(x)  # builds the plan (its first run prepares the steps)
    plan = _plan_of(model)
    seen = _spy_threads(plan)
    outs = [np.asarray(model.predict_on_batch(x)) for _ in range(4)]
    assert seen[:3] == [2, 2, 1], seen  # the team twice, then one thread, each timed
    team, one, _ = plan._choices[True]
    assert len(team) + len(one) == 4 and min(team) > 0 and one[0] > 0
    assert plan._choices[False] == [[], [], 0]  # no warm run yet
    if len(team) == 2:  # the fourth call's choice, by the medians (cold): sorted(team)[1]
        assert seen[3] == 1 and one[0] < max(team[:2])
    else:
        assert seen[3] == 2 and not one[0] < max(team[:2])
    assert fastconv.get_num_threads() == 2
    for out in outs:
        _close(out, ref)


@pytest.mark.parametrize("cold", [True, False])
def test_the_faster_choice_is_kept_and_the_other_retried(two_threads, monkeypatch, cold):
    if not cold:
        monkeypatch.setattr(inference, "_IDLE_S", 1e9)  # every call is a warm one
    model, x = _model_and_input(1)
    model.predict_on_batch(x)
    plan = _plan_of(model)
    seen = _spy_threads(plan)
    # One thread "measured" far faster: every call keeps it, but the _REPROBE-th tries the
    # team again (and its new timing replaces the old).
    plan._choice(cold)[:] = [[1e9] * 3, [1e-9], 0]
    for _ in range(inference._REPROBE):
        model.predict_on_batch(x)
    assert seen == [1] * (inference._REPROBE - 1) + [2], seen
    team, one, _ = plan._choice(cold)
    assert team[:3] == [1e9] * 3 and len(team) == 4 and team[3] < 1e3  # the new timing kept
    assert len(one) == inference._KEEP and one[0] > 1e-9  # only the last _KEEP kept
    assert plan._choice(not cold) == [[], [], 0]  # the other state's record untouched
    assert fastconv.get_num_threads() == 2


def test_one_slow_team_run_does_not_move_the_choice(two_threads):
    """The median of the last runs decides: one outlier among the team's times does not."""
    model, x = _model_and_input(6)
    model.predict_on_batch(x)
    plan = _plan_of(model)
    seen = _spy_threads(plan)
    plan._choice(True)[:] = [[1.0, 1.0, 1e9], [2.0, 2.0], 1]
    model.predict_on_batch(x)
    assert seen == [2]


def test_warm_calls_go_by_the_fastest_run(two_threads, monkeypatch):
    """A warm record goes by each side's fastest run: a stalled team run (a descheduled vCPU)
    does not send warm calls to one thread, where the median of the same times would."""
    monkeypatch.setattr(inference, "_IDLE_S", 1e9)  # every call is a warm one
    model, x = _model_and_input(7)
    model.predict_on_batch(x)
    plan = _plan_of(model)
    seen = _spy_threads(plan)
    plan._choice(False)[:] = [[5.0, 5.0, 0.5], [1.0, 1.0, 1.0], 1]  # median: one thread; min: team
    model.predict_on_batch(x)
    plan._choice(True)[:] = [[5.0, 5.0, 0.5], [1.0, 1.0, 1.0], 1]  # cold: the median decides
    monkeypatch.setattr(inference, "_IDLE_S", -1.0)  # every call is a cold one
    model.predict_on_batch(x)
    assert seen == [2, 1], seen


def test_cold_and_warm_records_are_separate(monkeypatch):
    """One thread winning cold calls does not move warm calls off the team."""
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    try:
        monkeypatch.setattr(inference, "_IDLE_S", 1e9)  # never idle long enough
        model, x = _model_and_input(2)
        model.predict_on_batch(x)
        plan = _plan_of(model)
        plan._choice(True)[:] = [[1e9], [1e-9], 0]  # one thread would win a cold call
        plan._choice(False)[:] = [[1e-9], [1e9], 0]  # the team wins warm ones
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
    plan._choice(True)[:] = [[1e9], [1e-9], 0]  # the next cold call runs on one thread
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
        assert "_choices" not in _plan_of(model).__dict__  # no team bookkeeping at 1 thread
        assert fastconv.get_num_threads() == 1
    finally:
        fastconv.set_num_threads(before)


def _cpu_seconds_over(seconds):
    import time
    c0 = time.process_time()
    time.sleep(seconds)
    return time.process_time() - c0


@pytest.mark.parametrize("threads", [2, 3])
def test_team_hold_outputs_are_identical_and_nothing_spins_afterwards(monkeypatch, threads):
    """The same team runs with and without the hold: bit-identical outputs; the keeper's
    threads spin while a hold is open and none once the predict returned (the process then
    uses no CPU over a sleep). The keeper is set up through the hold hooks directly too."""
    import os
    import time
    from fastconv import _C
    expect = min(threads, len(os.sched_getaffinity(0))) - 1  # keepers: threads - 1, CPUs - 1 at most
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        monkeypatch.setattr(inference, "_pick_one", lambda choice, cold=True: False)  # always the team
        model, x = _model_and_input(5)
        monkeypatch.setattr(inference, "_HOLD_TEAM", False)
        model.predict_on_batch(x)
        ref = np.asarray(model.predict_on_batch(x)).copy()
        monkeypatch.setattr(inference, "_HOLD_TEAM", True)
        plan = _plan_of(model)
        (first, *rest), clear = plan.flat[0]
        spinning_inside = []

        def step(regs):
            # The count that satisfied the wait: a second read may come after the keeper's
            # 2 s spin limit ran out (a SCHED_IDLE spinner starved on a busy machine).
            seen = []
            _wait_for(lambda: seen.append(_C._team_spinning()) or seen[-1] == expect)  # the hold is open here
            spinning_inside.append(seen[-1])
            first(regs)
        plan.flat[0] = ((step, *rest), clear)
        outs = [np.asarray(model.predict_on_batch(x)) for _ in range(3)]
        for out in outs:
            np.testing.assert_array_equal(out, ref)
        assert spinning_inside == [expect] * 3
        assert _wait_for_no_spinner()
        assert _cpu_seconds_over(0.2) < 0.05  # nothing left burning a core
        # Direct: the hooks alone.
        began = time.monotonic()  # no spinner can have started spinning before this
        _C._team_hold_begin()
        _C._team_hold_begin()  # holds nest
        try:
            _wait_for(lambda: _C._team_spinning() == expect)
            _C._team_hold_end()
            # One hold is still open, so they spin on, unless the keeper's 2 s limit (kMaxSpin,
            # threads.cpp) ran out, which a starved SCHED_IDLE spinner can reach here.
            assert _C._team_spinning() == expect or time.monotonic() - began >= 2.0
        finally:
            _C._team_hold_end()
        assert _wait_for_no_spinner()
        _C._team_hold_end()  # an unmatched end is a no-op
        assert _C._team_spinning() == 0
        assert _cpu_seconds_over(0.2) < 0.05
        assert fastconv.get_num_threads() == threads
    finally:
        fastconv.set_num_threads(before)


def _wait_for(cond, seconds=20.0):  # a SCHED_IDLE keeper runs late on a busy machine
    import time
    end = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.001)
    return True


def _wait_for_no_spinner():
    from fastconv import _C
    return _wait_for(lambda: _C._team_spinning() == 0)
