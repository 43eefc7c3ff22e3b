"""Exact answers on fully split sub-domains: one LP per linear region, with its dual proof.

When every hidden neuron of a sub-domain D is fixed — split, or stable by its bounds — the
network is affine on D. With the activation pattern as 0/1 diagonals M_k,

    z₁ = W₁ x + b₁,   z_k = W_k M_{k−1} z_{k−1} + b_k   ⇒   z_k = A_k x + c_k,

so every row r_i(x) = spec_i · z_L + offset_i is affine, and so is every split constraint
s_j z_j(x) ≥ 0. The LP

    t* = min t   s.t.  r_i(x) − t ≤ 0 (all i),  −s_j z_j(x) − t ≤ 0 (split j),  l ≤ x ≤ u

is always feasible. If t* ≤ 0 its minimiser lies in D with every row ≤ 0: a candidate
counterexample. If t* > 0 its dual multipliers λ ≥ 0 (rows) and β ≥ 0 (splits),
Σλ + Σβ = 1, give the *checkable* Lagrangian bound

    Σ_i λ_i r_i(x) ≥ Σ_i λ_i r_i(x) − Σ_j β_j s_j z_j(x) ≥ min_{l ≤ x ≤ u} (affine in x)

on D (where s_j z_j ≥ 0), valid for any λ, β ≥ 0 whatever the solver's accuracy. When it
is positive no point of D is unsafe — with λ = 0 it says D itself is empty. This is what
certificates store and what :mod:`nobound.certify.checker` re-evaluates on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from nobound.exact.dense import DenseNetwork

# Linear regions are only formed densely for networks with at most this many inputs.
MAX_LP_INPUTS = 4096


@dataclass
class LeafSolution:
    """``value``: LP optimum t*; ``point``: its minimiser (flat); ``bound``: the Lagrangian
    bound from (row_weights, betas) when t* > 0, else −inf."""

    value: float
    point: np.ndarray | None
    row_weights: np.ndarray
    betas: dict[tuple[int, int], float]
    bound: float


def region_maps(network: DenseNetwork, active: list[np.ndarray]) -> list[tuple[np.ndarray,
                                                                             np.ndarray]]:
    """[(A_k, c_k)] with z_k = A_k x + c_k on the region of the 0/1 pattern ``active``."""
    maps = [(network.weights[0], network.biases[0])]
    for k in range(1, len(network.weights)):
        matrix, constant = maps[-1]
        mask = active[k - 1].astype(np.float64)
        maps.append((network.weights[k] @ (mask[:, None] * matrix),
                     network.weights[k] @ (mask * constant) + network.biases[k]))
    return maps


def solve_leaf(network: DenseNetwork, lower: np.ndarray, upper: np.ndarray,
               spec: np.ndarray, offset: np.ndarray, active: list[np.ndarray],
               signs: list[np.ndarray]) -> LeafSolution:
    """Solve the epigraph LP of one fully fixed sub-domain (see the module docstring).

    ``active[k]`` is the 0/1 pattern of hidden layer k, ``signs[k]`` its split signs
    (+1, −1, 0 for unsplit). ``lower``/``upper`` are the flat input box.
    """
    maps = region_maps(network, active)
    rows_matrix = spec @ maps[-1][0]
    rows_constant = spec @ maps[-1][1] + offset
    split_rows, split_constants, split_keys = [], [], []
    for k, layer_signs in enumerate(signs):
        for neuron in np.flatnonzero(layer_signs):
            sign = float(layer_signs[neuron])
            split_rows.append(-sign * maps[k][0][neuron])
            split_constants.append(-sign * maps[k][1][neuron])
            split_keys.append((k, int(neuron)))
    num_inputs, num_rows = lower.size, spec.shape[0]
    # variables (x, t): r_i(x) − t ≤ 0 and −s_j z_j(x) − t ≤ 0, written as G [x; t] ≤ h
    constraints = np.hstack([np.vstack([rows_matrix,
                                        np.array(split_rows).reshape(-1, num_inputs)]),
                             -np.ones((num_rows + len(split_rows), 1))])
    right = np.concatenate([-rows_constant, -np.array(split_constants, dtype=float)])
    cost = np.zeros(num_inputs + 1)
    cost[-1] = 1.0
    bounds = list(zip(lower, upper, strict=True)) + [(None, None)]
    if not (np.all(np.isfinite(constraints)) and np.all(np.isfinite(right))):
        # the region's affine map overflows float64: no LP answer (left undecided)
        return LeafSolution(-np.inf, None, np.zeros(num_rows), {}, -np.inf)
    result = linprog(cost, A_ub=constraints, b_ub=right, bounds=bounds, method="highs")
    if result.status != 0:
        return LeafSolution(-np.inf, None, np.zeros(num_rows), {}, -np.inf)
    multipliers = np.maximum(-result.ineqlin.marginals, 0.0)
    row_weights = multipliers[:num_rows]
    betas = {key: float(b) for key, b in zip(split_keys, multipliers[num_rows:], strict=True)
             if b > 0}
    bound = lagrangian_bound(maps, lower, upper, spec, offset, row_weights, betas, signs) \
        if result.fun > 0 else -np.inf
    return LeafSolution(float(result.fun), result.x[:num_inputs], row_weights, betas, bound)


def lagrangian_bound(maps: list[tuple[np.ndarray, np.ndarray]], lower: np.ndarray,
                     upper: np.ndarray, spec: np.ndarray, offset: np.ndarray,
                     row_weights: np.ndarray, betas: dict[tuple[int, int], float],
                     signs: list[np.ndarray]) -> float:
    """min over the box of Σλ_i r_i(x) − Σβ_j s_j z_j(x), all affine on the region."""
    coefficients = row_weights @ spec @ maps[-1][0]
    constant = row_weights @ (spec @ maps[-1][1] + offset)
    for (k, neuron), beta in betas.items():
        sign = float(signs[k][neuron])
        coefficients = coefficients - beta * sign * maps[k][0][neuron]
        constant -= beta * sign * maps[k][1][neuron]
    return float(constant + np.minimum(coefficients * lower, coefficients * upper).sum())
