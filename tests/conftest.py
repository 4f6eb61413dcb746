"""Shared test setup: a modest hypothesis profile (2-core CI) and backend fixtures."""
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastconv

settings.register_profile("fastconv", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fastconv")


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
def rng():
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
