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
