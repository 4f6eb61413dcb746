"""A multi-thread plan run (engine/inference.py, _run_team) takes the team or one thread by a
rule fixed when the plan is built: one thread where the plan's steps average fewer than
_TEAM_MIN_WORK multiply-adds (output elements for the memory-bound steps), the team
otherwise. So a model's predictions are the same bits on every call, from its first, and
equal to those of an identical model (its saved-and-loaded twin): a timed choice let them
move in the last bits. The thread knob is back where it was afterwards (also when a step
raises). With _HOLD_TEAM, a team run holds the team keeper (threads.cpp) and releases it at
its end: no keeper thread spins and the process burns no CPU once predict has returned.

Which thread count a call used is read inside a step with fastconv.get_num_threads().
Outputs against the plan-off predict: rtol 1e-5 plus atol 1e-5 times the output's magnitude
(the fold and the fusions reorder float32 sums).
"""
import numpy as np
import pytest

import fastconv
from fastconv.engine import inference
from fastconv.models import zoo


def _resnet18(seed=0):
    fastconv.set_seed(seed)
    model = zoo.resnet18((32, 32, 3), classes=10, stem="cifar")
    x = np.random.default_rng(seed).standard_normal((1, 32, 32, 3)).astype(np.float32)
    return model, x


def _lenet5(seed=0, batch=1):
    fastconv.set_seed(seed)
    model = zoo.lenet5()
    x = np.random.default_rng(seed).standard_normal((batch, 28, 28, 1)).astype(np.float32)
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


def _plain_predict(model, x):
    inference.set_inference_plan(False)
    try:
        return np.asarray(model.predict_on_batch(x))
    finally:
        inference.set_inference_plan(True)


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5 * scale)


def _macs_per_step(plan):
    return plan.work / len(plan.steps)


@pytest.mark.parametrize("build, threads", [(_lenet5, 1), (_resnet18, 2)])
def test_the_rule_follows_the_work_per_step(two_threads, build, threads):
    """LeNet-5 at batch 1 (~5e4 multiply-adds a step) runs on one thread; ResNet-18 CIFAR at
    batch 1 (~2.5e7) on the team; each call after the first as well."""
    model, x = build()
    model.predict_on_batch(x)
    plan = _plan_of(model)
    assert plan.one_thread == (threads == 1)
    assert (_macs_per_step(plan) < inference._TEAM_MIN_WORK) == (threads == 1), _macs_per_step(plan)
    seen = _spy_threads(plan)
    for _ in range(3):
        model.predict_on_batch(x)
    assert seen == [threads] * 3
    assert fastconv.get_num_threads() == 2


def test_work_counts_multiply_adds_of_convs_and_dense_layers(two_threads):
    """LeNet-5's plan work, by hand: conv 5x5 1->6 'same' on 28x28, conv 5x5 6->16 'valid' on
    14x14, dense 400->120->84->10, plus the output elements of its other steps (pools, ...)."""
    model, x = _lenet5(batch=3)
    model.predict_on_batch(x)
    plan = _plan_of(model)
    macs = 3 * (28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10)
    others = plan.work - macs
    assert 0 < others < 3 * (28 * 28 * 6 + 14 * 14 * 6 + 10 * 10 * 16 + 5 * 5 * 16 + 400 + 10) * 2, plan.describe()


@pytest.mark.parametrize("build", [_lenet5, _resnet18])
def test_every_call_gives_the_same_bits_as_an_identical_model(two_threads, build):
    """The first call (which prepares the plan) included, and a second model with the same
    weights: the same bits; and the plain predict within float32 rounding."""
    model, x = build(3)
    twin, _ = build(3)
    ref = _plain_predict(model, x)
    outs = [np.asarray(model.predict_on_batch(x)).copy() for _ in range(4)]
    outs.append(np.asarray(twin.predict_on_batch(x)))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    _close(outs[0], ref)


def test_a_one_thread_plan_built_on_the_team_gives_one_threads_bits(two_threads, monkeypatch):
    """The plan's first run prepares its steps on the team; a one-thread plan reruns that
    call on one thread, so its first output equals its later ones and those of a plan built
    at one thread. (At batch 64 LeNet-5's conv and dense kernels split their work by the
    thread count, and the team's sums differ from one thread's.)"""
    monkeypatch.setattr(inference, "_TEAM_MIN_WORK", 1 << 60)  # every plan one thread's
    model, x = _lenet5(4, batch=64)
    twin, _ = _lenet5(4, batch=64)
    first = np.asarray(model.predict_on_batch(x)).copy()
    assert _plan_of(model).one_thread
    fastconv.set_num_threads(1)
    try:
        alone = np.asarray(twin.predict_on_batch(x)).copy()
    finally:
        fastconv.set_num_threads(2)
    np.testing.assert_array_equal(first, alone)
    np.testing.assert_array_equal(np.asarray(model.predict_on_batch(x)), first)


def test_the_rule_is_read_when_the_plan_is_built(two_threads, monkeypatch):
    monkeypatch.setattr(inference, "_TEAM_MIN_WORK", 0)  # every new plan takes the team
    model, x = _lenet5(5)
    model.predict_on_batch(x)
    plan = _plan_of(model)
    assert not plan.one_thread
    monkeypatch.setattr(inference, "_TEAM_MIN_WORK", 1 << 60)  # later changes do not move it
    seen = _spy_threads(plan)
    model.predict_on_batch(x)
    assert seen == [2] and not plan.one_thread


def test_the_thread_knob_is_restored_when_a_step_raises(two_threads):
    model, x = _lenet5(3)
    model.predict_on_batch(x)
    plan = _plan_of(model)
    assert plan.one_thread
    (first, *rest), clear = plan.flat[0]

    def boom(regs):
        assert fastconv.get_num_threads() == 1
        raise RuntimeError("step failed")
    plan.flat[0] = ((boom, *rest), clear)
    with pytest.raises(RuntimeError, match="step failed"):
        model.predict_on_batch(x)
    assert fastconv.get_num_threads() == 2


def test_one_thread_knob_keeps_one_thread():
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(1)
    try:
        model, x = _resnet18(4)
        model.predict_on_batch(x)
        seen = _spy_threads(_plan_of(model))
        model.predict_on_batch(x)
        assert seen == [1] and fastconv.get_num_threads() == 1
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
        monkeypatch.setattr(inference, "_TEAM_MIN_WORK", 0)  # always the team
        model, x = _resnet18(5)
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
