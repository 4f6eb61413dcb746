"""Shared test setup: hypothesis profiles (modest, for 2-core CI; derandomized in CI) and backend fixtures."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastconv

settings.register_profile("fastconv", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
# CI: the same examples every run (derandomize), so a red CI reproduces on any machine; no
# example database, whose replays would make one run depend on the previous ones.
settings.register_profile("ci", parent=settings.get_profile("fastconv"), derandomize=True,
                          database=None, print_blob=True)


def _truthy(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


settings.load_profile("ci" if _truthy("CI") or _truthy("FASTCONV_CI") else "fastconv")


@pytest.fixture
def numpy_backend():
    """Run the test on the NumPy oracle backend (float64 allowed)."""
    with fastconv.backend("numpy"):
        yield


@pytest.fixture(params=["numpy", "cpu"])
def any_backend(request):
    """Run the test once per available CPU-side backend."""
    with fastconv.backend(request.param):
        yield request.param


@pytest.fixture
def two_threads():
    """Run the test with two kernel threads (the thread splits are their own code paths)."""
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    yield
    fastconv.set_num_threads(before)


@pytest.fixture(autouse=True)
def restore_threads():
    """Each test ends with the kernel thread count it started with: a benchmark's main() sets
    it for its run and leaves it, and a later test in the same process then took other kernels
    (test_distribute_mpi's reference ran at 1 thread after test_bench_smoke and no longer
    matched the MPI ranks)."""
    before = fastconv.get_num_threads()
    yield
    if fastconv.get_num_threads() != before:
        fastconv.set_num_threads(before)


@pytest.fixture
def rng():
    """A fresh generator per test, always seeded the same: failures reproduce."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True, scope="session")
def poison_outputs():
    """Every output the cpu and cuda backends allocate for a kernel starts as NaN for the whole
    session (fastconv._C._set_poison_outputs, fastconv.cuda._set_poison_outputs), so a kernel
    that leaves part of its output unwritten fails its oracle test instead of passing by luck
    of what np.empty's memory held."""
    from fastconv import _C, cuda
    before = _C._get_poison_outputs(), cuda._get_poison_outputs()
    _C._set_poison_outputs(True)
    cuda._set_poison_outputs(True)
    yield
    _C._set_poison_outputs(before[0])
    cuda._set_poison_outputs(before[1])
