"""Relaxations against exact answers computed by HiGHS on tiny networks.

* Every method's lower bound of each spec row is ≤ the exact minimum m*, and its upper
  bound ≥ the exact maximum. The comparison uses the value the MILP's minimiser attains in
  a float64 forward pass (a real input of the region, so m* ≤ it): it does not depend on
  solver tolerances, only on round-off.
* The triangle LP with a method's own intermediate bounds is never looser than the
  back-substitution methods that use those bounds (DeepPoly/CROWN, CROWN-IBP,
  alpha-CROWN with any slopes): LP ≥ their lower bound, −LP(−c) ≤ their upper bound.
  This is a theorem (see :mod:`nobound.exact.lp`); the LP is solved to 1e-10 feasibility,
  hence a 1e-7 relative slack for the solver.
* With splits, the same holds against the MILP restricted to the split sub-region.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.autodiff.tensor import Tensor
from nobound.bounds import METHODS, Box, compute_bounds
from nobound.exact import dense_network, minimise_output, triangle_lp_minimum
from nobound.exact.intervals import interval_bounds
from nobound.exact.milp import solve_milp
from nobound.testing.soundness import assert_above, assert_below
from nobound.testing.strategies import bound_problems, conv_networks, fc_networks

LP_SOLVER_SLACK = 1e-7
# A MILP stopped by the limit still returns a real input, so the checks stay valid.
MILP_TIME_LIMIT = 10.0
BACK_SUBSTITUTION_METHODS = ("crown-ibp", "deeppoly", "alpha-crown")

tiny_networks = st.one_of(fc_networks(max_inputs=4, max_hidden_layers=2, max_width=4),
                          conv_networks(max_size=3, max_channels=1, max_hidden=3))
tiny_problems = bound_problems(network_strategy=tiny_networks, max_batch=1,
                               radii=[0.01, 0.1, 0.3, 1.0])


def exact_extremes(dense, lower: np.ndarray, upper: np.ndarray, spec: np.ndarray,
                   splits: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per spec row, the values attained by the MILP's minimiser and maximiser."""
    bounds = interval_bounds(dense, lower, upper, splits)
    minima = [solve_milp(dense, lower, upper, row, bounds, MILP_TIME_LIMIT).attained
              for row in spec]
    maxima = [-solve_milp(dense, lower, upper, -row, bounds, MILP_TIME_LIMIT).attained
              for row in spec]
    return np.array(minima), np.array(maxima)


def layer_bounds(result, dense, b: int = 0) -> list:
    return [(result.intermediate[index][0].numpy()[b], result.intermediate[index][1].numpy()[b])
            for index in dense.relu_layers]


@settings(max_examples=100)
@given(problem=tiny_problems, alpha_init=st.sampled_from(["deeppoly", 0.0, 0.5, 1.0]))
def test_every_lower_bound_is_below_the_exact_minimum(problem, alpha_init):
    model = problem.network.model
    region = Box(Tensor(problem.lower), Tensor(problem.upper))
    dense = dense_network(model, problem.network.input_shape)
    spec = np.asarray(problem.spec_matrix)[0]
    lower, upper = problem.lower[0], problem.upper[0]
    minima, maxima = exact_extremes(dense, lower, upper, spec)
    for method in METHODS:
        result = compute_bounds(model, region, method=method, spec=problem.spec,
                                alpha_init=alpha_init, alpha_steps=3)
        assert_below(result.lower.numpy()[0], minima, f"{method} vs MILP minimum")
        assert_above(result.upper.numpy()[0], maxima, f"{method} vs MILP maximum")


@settings(max_examples=100)
@given(problem=tiny_problems, method=st.sampled_from(BACK_SUBSTITUTION_METHODS),
       alpha_init=st.sampled_from(["deeppoly", 0.0, 0.5, 1.0]))
def test_triangle_lp_with_the_same_intermediate_bounds_is_never_looser(problem, method,
                                                                       alpha_init):
    model = problem.network.model
    region = Box(Tensor(problem.lower), Tensor(problem.upper))
    result = compute_bounds(model, region, method=method, spec=problem.spec,
                            alpha_init=alpha_init, alpha_steps=3)
    dense = dense_network(model, problem.network.input_shape)
    intermediate = layer_bounds(result, dense)
    lower, upper = problem.lower[0], problem.upper[0]
    for k, row in enumerate(np.asarray(problem.spec_matrix)[0]):
        low = triangle_lp_minimum(dense, lower, upper, row, intermediate).value
        high = -triangle_lp_minimum(dense, lower, upper, -row, intermediate).value
        bound_low = result.lower.numpy()[0, k]
        bound_high = result.upper.numpy()[0, k]
        assert bound_low <= low + LP_SOLVER_SLACK * (1 + abs(low)), \
            f"{method} lower {bound_low} above the triangle LP {low} (row {k})"
        assert bound_high >= high - LP_SOLVER_SLACK * (1 + abs(high)), \
            f"{method} upper {bound_high} below the triangle LP {high} (row {k})"
        exact = minimise_output(dense, lower, upper, row, time_limit=MILP_TIME_LIMIT)
        assert low <= exact.attained + LP_SOLVER_SLACK * (1 + abs(low)), \
            f"triangle LP {low} above the exact minimum {exact.attained}"


@settings(max_examples=100)
@given(problem=tiny_problems, seed=st.integers(0, 2**32 - 1))
def test_bounds_with_splits_are_below_the_exact_minimum_of_the_sub_region(problem, seed):
    model = problem.network.model
    dense = dense_network(model, problem.network.input_shape)
    rng = np.random.default_rng(seed)
    splits = {index: rng.choice(np.array([-1, 0, 1], np.int8), size=(1, *shape))
              for index, shape in zip(dense.relu_layers, dense.relu_shapes, strict=True)}
    region = Box(Tensor(problem.lower), Tensor(problem.upper))
    spec = np.asarray(problem.spec_matrix)[0]
    flat_splits = {index: signs[0] for index, signs in splits.items()}
    minima, maxima = exact_extremes(dense, problem.lower[0], problem.upper[0], spec,
                                    flat_splits)
    if not np.all(np.isfinite(minima)):
        return  # the split sub-region is empty: any bound is vacuously sound
    for method in METHODS:
        result = compute_bounds(model, region, method=method, spec=problem.spec,
                                splits=splits)
        assert_below(result.lower.numpy()[0], minima, f"{method} with splits vs MILP")
        assert_above(result.upper.numpy()[0], maxima, f"{method} with splits vs MILP")
