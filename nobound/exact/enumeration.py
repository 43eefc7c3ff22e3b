"""The exact minimum by enumerating activation patterns: an MILP-free ground truth.

Fix which hidden neurons are active (a pattern D₁, …, D_{L−1} of 0/1 diagonals). On the
inputs that realise the pattern, the network is affine,

    z_k = A_k x + a_k,   A_k = W_k D_{k−1} A_{k−1},   a_k = W_k D_{k−1} a_{k−1} + b_k,

and that set is the polytope {x in the box : A_k x + a_k ≥ 0 on active neurons, ≤ 0 on
inactive ones}. So m* = min over patterns of an LP in x alone. Neurons that interval
bounds prove stable are fixed, so the cost is 2^(number of unstable neurons) small LPs:
use it only for tiny networks, as an independent check of the MILP.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
from scipy.optimize import linprog

from nobound.exact.dense import DenseNetwork
from nobound.exact.intervals import interval_bounds, is_empty
from nobound.exact.lp import HIGHS_LP_OPTIONS
from nobound.exact.milp import ExactMinimum, as_dense
from nobound.nn.module import Module

MAX_ENUMERATED_NEURONS = 14


def _pattern_minimum(network: DenseNetwork, box: tuple[np.ndarray, np.ndarray],
                     objective: np.ndarray, pattern: list[np.ndarray],
                     ) -> tuple[float, np.ndarray | None]:
    """The LP over the polytope of one activation pattern (list of 0/1 per hidden layer)."""
    size = network.input_size
    linear, offset = np.eye(size), np.zeros(size)
    sign_rows, sign_bounds = [], []
    for k, (weight, bias) in enumerate(zip(network.weights, network.biases, strict=True)):
        linear, offset = weight @ linear, weight @ offset + bias
        if k == network.num_hidden_layers:
            break
        # active: −(A x + a) ≤ 0; inactive: A x + a ≤ 0.
        orientation = np.where(pattern[k] > 0, -1.0, 1.0)
        sign_rows.append(orientation[:, None] * linear)
        sign_bounds.append(-orientation * offset)
        linear, offset = pattern[k][:, None] * linear, pattern[k] * offset
    a_ub = np.concatenate(sign_rows) if sign_rows else None
    b_ub = np.concatenate(sign_bounds) if sign_bounds else None
    solution = linprog(objective @ linear, A_ub=a_ub, b_ub=b_ub,
                       bounds=np.stack(box, axis=1), method="highs",
                       options=HIGHS_LP_OPTIONS)
    if solution.status != 0:
        return float("inf"), None
    return float(solution.fun + objective @ offset), solution.x


def enumerate_minimum(model: Module | DenseNetwork, lower: np.ndarray, upper: np.ndarray,
                      objective: np.ndarray, splits: Mapping[int, np.ndarray] | None = None,
                      ) -> ExactMinimum:
    """min objective·f(x) over the box (and split sub-region) by enumerating patterns."""
    lower = np.asarray(lower, np.float64)
    network = as_dense(model, lower.shape)
    objective = np.asarray(objective, np.float64).reshape(-1)
    bounds = interval_bounds(network, lower, upper, splits)[:network.num_hidden_layers]
    if is_empty(bounds):
        return ExactMinimum(float("inf"), None, float("inf"))
    choices = []  # per hidden neuron, the activation states interval bounds allow
    for low, high in bounds:
        choices += [(1.0,) if neuron_low >= 0 else (0.0,) if neuron_high <= 0 else (0.0, 1.0)
                    for neuron_low, neuron_high in zip(low, high, strict=True)]
    free = sum(len(options) == 2 for options in choices)
    if free > MAX_ENUMERATED_NEURONS:
        raise ValueError(f"{free} unstable neurons: 2^{free} patterns is too many to enumerate")
    box = (lower.reshape(-1), np.asarray(upper, np.float64).reshape(-1))
    sizes = np.cumsum([0] + [len(low) for low, _ in bounds])
    best, best_point = float("inf"), None
    for states in itertools.product(*choices):
        flat = np.asarray(states)
        pattern = [flat[sizes[k]:sizes[k + 1]] for k in range(len(bounds))]
        value, point = _pattern_minimum(network, box, objective, pattern)
        if value < best:
            best, best_point = value, point
    if best_point is None:
        return ExactMinimum(float("inf"), None, float("inf"))
    point = np.clip(best_point, *box)
    attained = float(objective @ network.forward(point[None])[0])
    return ExactMinimum(best, point.reshape(network.input_shape), attained)
