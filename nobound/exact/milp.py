"""The exact minimum of c·f(x) over a box, by a big-M MILP (scipy.optimize.milp, HiGHS).

    m* = min { c·f(x) : l₀ ≤ x ≤ u₀, and split neurons have the forced sign }

is encoded exactly with one binary per unstable ReLU (see :mod:`nobound.exact.encoding`);
the big-M constants are interval bounds (eq. 3), which are valid, so no input is cut
off. HiGHS solves it to a zero optimality gap with feasibility tolerances of 1e-9.

What the answer certifies: the minimiser is replayed through a float64 forward pass, so
``attained`` = c·f(x̂) is the value of a real input of the region, hence m* ≤ attained;
and HiGHS's ``value`` equals m* up to its tolerances. A sound relaxation's lower bound
must therefore be ≤ ``attained`` (up to float64 round-off), whatever the solver did.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from nobound.exact.dense import DenseNetwork, dense_network
from nobound.exact.encoding import encode
from nobound.exact.intervals import Interval, interval_bounds, is_empty
from nobound.nn.module import Module

# Passed to HiGHS verbatim (scipy warns about options it does not itself document).
HIGHS_MILP_OPTIONS = {"mip_rel_gap": 0.0, "mip_abs_gap": 0.0,
                      "mip_feasibility_tolerance": 1e-9,
                      "primal_feasibility_tolerance": 1e-9,
                      "dual_feasibility_tolerance": 1e-9}


@dataclass
class ExactMinimum:
    """The answer of an exact solver for one objective row.

    ``value``: the solver's optimum (+inf when the region is empty); ``minimiser``: an
    input of shape ``input_shape`` in the box (None when empty); ``attained``: c·f of the
    minimiser by a float64 forward, an upper bound on the true minimum. ``optimal`` is
    False when a time limit stopped the solver first: ``value`` and ``minimiser`` are then
    the best found so far, and ``attained`` is still a value the network takes.
    """

    value: float
    minimiser: np.ndarray | None
    attained: float
    optimal: bool = True


def as_dense(model: Module | DenseNetwork, input_shape: Sequence[int]) -> DenseNetwork:
    return model if isinstance(model, DenseNetwork) else dense_network(model, input_shape)


def solve_milp(network: DenseNetwork, lower: np.ndarray, upper: np.ndarray,
               objective: np.ndarray, bounds: Sequence[Interval],
               time_limit: float | None = None) -> ExactMinimum:
    """Minimise objective·f over the box with the given valid pre-activation bounds."""
    lower = np.asarray(lower, np.float64)
    upper = np.asarray(upper, np.float64)
    if is_empty(bounds[:network.num_hidden_layers]) or np.any(lower > upper):
        return ExactMinimum(float("inf"), None, float("inf"))
    program = encode(network, lower, upper, objective, bounds, exact=True)
    constraints = [LinearConstraint(program.matrix, program.row_lower, program.row_upper)] \
        if program.matrix.shape[0] else []
    options = dict(HIGHS_MILP_OPTIONS)
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unrecognized options", RuntimeWarning)
        solution = milp(program.cost, integrality=program.integrality,
                        bounds=Bounds(program.lower, program.upper), constraints=constraints,
                        options=options)
    if solution.status == 2:  # infeasible: the split sub-region contains no input
        return ExactMinimum(float("inf"), None, float("inf"))
    # status 1: a time or node limit; the incumbent (if any) is still a real input.
    if solution.status not in (0, 1) or solution.x is None:
        raise RuntimeError(f"MILP not solved: {solution.message}")
    # HiGHS may step outside the box by its tolerance; clipping keeps a real input.
    point = np.clip(solution.x[program.input_slice], lower.reshape(-1), upper.reshape(-1))
    attained = float(np.asarray(objective, np.float64).reshape(-1)
                     @ network.forward(point[None])[0])
    return ExactMinimum(float(solution.fun + program.constant),
                        point.reshape(network.input_shape), attained, solution.status == 0)


def minimise_output(model: Module | DenseNetwork, lower: np.ndarray, upper: np.ndarray,
                    objective: np.ndarray, splits: Mapping[int, np.ndarray] | None = None,
                    time_limit: float | None = None) -> ExactMinimum:
    """min objective·f(x) over lower ≤ x ≤ upper (one input, no batch axis), exactly.

    ``splits`` ({ReLU layer index: signs of that layer's neurons}, +1 forces z ≥ 0, −1
    forces z ≤ 0) restricts the region to the sub-region where the splits hold.
    """
    lower = np.asarray(lower, np.float64)
    network = as_dense(model, lower.shape)
    bounds = interval_bounds(network, lower, upper, splits)
    return solve_milp(network, lower, upper, objective, bounds, time_limit)


def exact_output_range(model: Module | DenseNetwork, lower: np.ndarray, upper: np.ndarray,
                       spec: np.ndarray, splits: Mapping[int, np.ndarray] | None = None,
                       time_limit: float | None = None,
                       ) -> tuple[np.ndarray, np.ndarray, list[ExactMinimum],
                                  list[ExactMinimum]]:
    """Exact (min, max) of every row of ``spec`` (K, outputs) · f(x) over the box.

    Returns (minima, maxima, minimum answers, maximum answers); a maximum is computed as
    −min(−row·f). Minima and maxima are the solver values; use the answers' ``attained``
    for statements that must not depend on solver tolerances.
    """
    lower = np.asarray(lower, np.float64)
    network = as_dense(model, lower.shape)
    bounds = interval_bounds(network, lower, upper, splits)
    spec = np.asarray(spec, np.float64).reshape(-1, network.output_size)
    lows = [solve_milp(network, lower, upper, row, bounds, time_limit) for row in spec]
    highs = [solve_milp(network, lower, upper, -row, bounds, time_limit) for row in spec]
    return (np.array([answer.value for answer in lows]),
            -np.array([answer.value for answer in highs]), lows, highs)
