"""Tiny random networks and problems for the certifier tests (float64 throughout)."""

from __future__ import annotations

import numpy as np

from nobound.certify.problem import VerificationProblem, float64_model
from nobound.exact import minimise_output
from nobound.nn import Linear, ReLU, Sequential, initialise


def tiny_network(seed: int, sizes: tuple[int, ...]) -> Sequential:
    """Linear/ReLU chain with flat inputs: sizes = (inputs, hidden…, outputs)."""
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(Linear(fan_in, fan_out, dtype=np.float64))
        if index < len(sizes) - 2:
            layers.append(ReLU())
    model = Sequential(*layers)
    initialise(model, "kaiming", seed=seed)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # non-zero biases make activation patterns less symmetric
        if isinstance(layer, Linear):
            layer.bias.data = rng.normal(scale=0.3, size=layer.bias.shape)
    return float64_model(model)


def near_boundary_problem(model: Sequential, centre: np.ndarray, radius: float,
                          row: np.ndarray, margin: float) -> tuple[VerificationProblem, float]:
    """The problem r(x) = row · f(x) + offset with the offset putting the exact minimum of
    r at ``margin``; returns (problem, the MILP's attained value of r at its minimiser)."""
    lower, upper = centre - radius, centre + radius
    exact = minimise_output(model, lower, upper, row)
    offset = margin - exact.value
    problem = VerificationProblem(model, lower, upper, row[None], np.array([offset]))
    return problem, exact.attained + offset


def bab_instance(min_bounded: int = 3) -> tuple[Sequential, VerificationProblem]:
    """A deterministic certified problem that needs branching (≥ min_bounded sub-problems)."""
    from nobound.certify.bab import BabConfig, branch_and_bound
    from nobound.exact import dense_network

    rng = np.random.default_rng(123)
    for seed in range(50):
        model = tiny_network(seed, (3, 8, 8, 2))
        centre = rng.uniform(-1, 1, 3)
        problem, _ = near_boundary_problem(model, centre, 0.4, np.array([1.0, -1.0]), 0.01)
        result = branch_and_bound(problem, dense_network(model, (3,)),
                                  BabConfig(batch_size=4, max_nodes=400))
        if result.status == "certified" and result.bounded >= min_bounded:
            return model, problem
    raise RuntimeError("no instance needing branch and bound was found")
