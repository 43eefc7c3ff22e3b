"""Shared fixtures: every test that takes ``xp`` runs on NumPy and (when a GPU is present) CuPy.

Tests use float64 so finite differences and exact comparisons are meaningful.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from nobound.backend import cupy_available

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("soundness", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=20000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ["numpy", pytest.param("cupy", marks=pytest.mark.skipif(
    not cupy_available(), reason="CuPy with a GPU is not available"))]


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test."""
    if request.param == "numpy":
        return np
    import cupy

    return cupy


@pytest.fixture
def mnist_dir():
    """The real MNIST directory (``$NOBOUND_DATA/mnist`` or ../shared/data/mnist), or skip."""
    root = os.environ.get("NOBOUND_DATA", os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "shared", "data"))
    path = os.path.join(root, "mnist")
    if not os.path.isdir(path):
        pytest.skip("real MNIST not available (set NOBOUND_DATA)")
    return path
