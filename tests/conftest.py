"""Shared fixtures: every test that takes ``xp`` runs on NumPy, on the CPU guard for CuPy
and (when a GPU is present) on CuPy.

Tests use float64 so finite differences and exact comparisons are meaningful.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from nobound.backend import array_module_for, cupy_available

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("soundness", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=20000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# NOBOUND_REQUIRE_GPU=1 (benchmarks/gpu_check.sh sets it): the CuPy tests must run; a
# missing CuPy or GPU fails them instead of skipping them.
REQUIRE_GPU = os.environ.get("NOBOUND_REQUIRE_GPU", "") == "1"
# NOBOUND_GUARD=0 leaves out the CPU stand-in for CuPy (on by default, so CI runs it).
WITH_GUARD = os.environ.get("NOBOUND_GUARD", "1") != "0"


def _cupy_backend():
    if REQUIRE_GPU:
        return "cupy"
    # cupy_available raises (at collection, failing the run) when CuPy is installed but
    # broken: only an absent CuPy or an absent GPU skips.
    return pytest.param("cupy", marks=pytest.mark.skipif(
        not cupy_available(), reason="CuPy with a GPU is not available"))


BACKENDS = ["numpy"] + (["guard"] if WITH_GUARD else []) + [_cupy_backend()]


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test: NumPy, the guard (nobound.testing.guard_xp: CuPy's
    behaviour on the CPU) and, with a GPU, CuPy."""
    if request.param == "numpy":
        return np
    if request.param == "guard":
        from nobound.testing import guard_xp

        return guard_xp
    return array_module_for("cuda")  # with NOBOUND_REQUIRE_GPU=1, fails loudly without one


DEVICES = (["guard"] if WITH_GUARD else []) + [
    "cuda" if REQUIRE_GPU else pytest.param("cuda", marks=pytest.mark.skipif(
        not cupy_available(), reason="CuPy with a GPU is not available"))]


@pytest.fixture(params=DEVICES)
def device(request):
    """A device name for end-to-end runs off NumPy: the guard, and "cuda" with a GPU."""
    return request.param


@pytest.fixture
def mnist_dir():
    """The real MNIST directory (``$NOBOUND_DATA/mnist`` or ../shared/data/mnist), or skip."""
    root = os.environ.get("NOBOUND_DATA", os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "shared", "data"))
    path = os.path.join(root, "mnist")
    if not os.path.isdir(path):
        pytest.skip("real MNIST not available (set NOBOUND_DATA)")
    return path


def _striped_problem(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=n)
    pixels = 0.5 * rng.random((n, 1, 8, 8))
    for k in range(3):
        pixels[labels == k, :, 2 * k + 1:2 * k + 3] += 0.5
    return pixels, labels


@pytest.fixture(scope="session")
def striped_problem():
    """A learnable three-class toy problem for end-to-end training runs:
    ``striped_problem(n)`` → (pixels (n, 1, 8, 8) in [0, 1], labels (n,)); class k brightens
    rows 2k+1 and 2k+2. The same n gives the same data every time."""
    return _striped_problem
