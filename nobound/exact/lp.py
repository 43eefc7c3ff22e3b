"""The triangle-relaxation LP (scipy.optimize.linprog, HiGHS) with given intermediate bounds.

Replacing every unstable ReLU y = ReLU(z), l < z < u, by its convex hull on [l, u],

    y ≥ 0,   y ≥ z,   y ≤ u (z − l) / (u − l),

and keeping affine layers and stable neurons exact gives the tightest convex relaxation
of the network that treats neurons one at a time ("Planet"; Ehlers, 2017). Its minimum
p_LP of c·f satisfies, for the *same* intermediate bounds l, u,

    DeepPoly/CROWN lower bound  ≤  p_LP  ≤  exact minimum m*,

because DeepPoly's lower line λz ≤ y (λ ∈ [0, 1]) and its upper line are implied by the
triangle, so every LP-feasible point satisfies DeepPoly's relaxation, whose linear bound
is minimised over a superset (Salman et al., 2019, "A convex relaxation barrier"). The
same holds for any alpha-CROWN slopes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import vstack

from nobound.exact.dense import DenseNetwork
from nobound.exact.encoding import encode
from nobound.exact.intervals import Interval, apply_split, flat_splits, is_empty
from nobound.exact.milp import as_dense
from nobound.nn.module import Module

HIGHS_LP_OPTIONS = {"primal_feasibility_tolerance": 1e-10,
                    "dual_feasibility_tolerance": 1e-10}


@dataclass
class RelaxedMinimum:
    """``value``: the LP optimum (+inf if infeasible); ``point``: the optimal input."""

    value: float
    point: np.ndarray | None


def triangle_lp_minimum(model: Module | DenseNetwork, lower: np.ndarray, upper: np.ndarray,
                        objective: np.ndarray, intermediate: Sequence[Interval],
                        splits: Mapping[int, np.ndarray] | None = None) -> RelaxedMinimum:
    """min objective·f over the triangle relaxation with pre-activation bounds ``intermediate``.

    ``intermediate[k]`` = (l, u) of the k-th hidden layer's pre-activations (any shape with
    that layer's number of neurons), e.g. a relaxation's ``result.intermediate`` entries in
    layer order for one batch element. Splits clamp them as the relaxations do.
    """
    lower = np.asarray(lower, np.float64)
    upper = np.asarray(upper, np.float64)
    network = as_dense(model, lower.shape)
    if len(intermediate) < network.num_hidden_layers:
        raise ValueError(f"need bounds for {network.num_hidden_layers} hidden layers, "
                         f"got {len(intermediate)}")
    signs = flat_splits(network, splits)
    bounds = [apply_split((np.asarray(low, np.float64).reshape(-1),
                           np.asarray(high, np.float64).reshape(-1)), sign)
              for (low, high), sign in zip(intermediate, signs, strict=False)]
    if is_empty(bounds) or np.any(lower > upper):
        return RelaxedMinimum(float("inf"), None)
    program = encode(network, lower, upper, objective, bounds, exact=False)
    rows = program.matrix
    # linprog wants A_ub v ≤ b_ub and A_eq v = b_eq: split the two-sided rows.
    equal = program.row_lower == program.row_upper
    has_upper = ~equal & np.isfinite(program.row_upper)
    has_lower = ~equal & np.isfinite(program.row_lower)
    inequality = rows[np.flatnonzero(has_upper)], program.row_upper[has_upper]
    negated = -rows[np.flatnonzero(has_lower)], -program.row_lower[has_lower]
    a_ub = vstack([inequality[0], negated[0]]).tocsr()
    b_ub = np.concatenate([inequality[1], negated[1]])
    solution = linprog(program.cost,
                       A_ub=a_ub if a_ub.shape[0] else None, b_ub=b_ub if len(b_ub) else None,
                       A_eq=rows[np.flatnonzero(equal)] if equal.any() else None,
                       b_eq=program.row_lower[equal] if equal.any() else None,
                       bounds=np.stack([program.lower, program.upper], axis=1),
                       method="highs", options=HIGHS_LP_OPTIONS)
    if solution.status == 2:
        return RelaxedMinimum(float("inf"), None)
    if solution.status != 0:
        raise RuntimeError(f"triangle LP not solved: {solution.message}")
    point = np.clip(solution.x[program.input_slice], lower.reshape(-1), upper.reshape(-1))
    return RelaxedMinimum(float(solution.fun + program.constant),
                          point.reshape(network.input_shape))
