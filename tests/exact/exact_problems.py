"""Random minimisation problems min_{l ≤ x ≤ u} cᵀ f(x) for the exact-solver tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from nobound.exact import dense_network

# HiGHS solves to zero gap with 1e-9 feasibility tolerances; big-M constants of order 10
# turn that into errors of order 1e-8. An encoding bug is off by O(1).
SOLVER_TOLERANCE = 1e-6


def tolerance(*values: float) -> float:
    """Solver slack relative to the largest magnitude involved."""
    return SOLVER_TOLERANCE * (1.0 + max(abs(v) for v in values))


def random_problem(network: Any, rng: np.random.Generator,
                   eps: float) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """(dense network, l, u, c): the box of radius ``eps`` around a uniform centre in
    [0, 1] and a standard normal objective c over the network's outputs."""
    centre = rng.uniform(0.0, 1.0, network.input_shape)
    objective = rng.normal(size=network.num_classes)
    dense = dense_network(network.model, network.input_shape)
    return dense, centre - eps, centre + eps, objective
