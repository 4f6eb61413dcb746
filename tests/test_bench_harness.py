"""fastconv.bench.harness timing helpers: which calls they make, in which order, and what they
return (no timing asserted: speed is measured in benchmarks/, never in tests)."""
from fastconv.bench import harness


def _recorder(log, name):
    return lambda: log.append(name)


def test_time_blocks_runs_back_to_back_blocks_rotating_each_round():
    log = []
    cases = {name: _recorder(log, name) for name in ("a", "b", "c")}
    times = harness.time_blocks(cases, repeats=2, rounds=3, pause=0.0)
    # each block: one warm-up call and two timed ones; round r starts at the r-th framework
    expected = []
    for first in range(3):
        for name in ["a", "b", "c"][first:] + ["a", "b", "c"][:first]:
            expected += [name] * 3
    assert log == expected
    assert {name: len(seconds) for name, seconds in times.items()} == {"a": 6, "b": 6, "c": 6}
    assert all(s >= 0 for seconds in times.values() for s in seconds)


def test_time_blocks_uses_the_given_clock():
    ticks = iter(range(1000))
    times = harness.time_blocks({"a": lambda: None}, repeats=3, rounds=2, pause=0.0,
                                clock=lambda: next(ticks))
    assert times == {"a": [1, 1, 1, 1, 1, 1]}  # one tick per timed call: start and stop


def test_time_interleaved_alternates_single_calls():
    log = []
    times = harness.time_interleaved({"a": _recorder(log, "a"), "b": _recorder(log, "b")}, repeats=2, warmup=1)
    assert log == ["a", "b", "a", "b", "a", "b"]
    assert [len(t) for t in times.values()] == [2, 2]
