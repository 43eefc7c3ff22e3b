"""The triangle LP is a relaxation: below the exact minimum, exact without unstable neurons,
monotone in its intermediate bounds."""

from __future__ import annotations

import numpy as np
from exact_problems import random_problem, tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.exact import dense_network, interval_bounds, minimise_output, triangle_lp_minimum
from nobound.nn import Linear, ReLU, Sequential
from nobound.testing.strategies import fc_networks

small_networks = fc_networks(max_inputs=3, max_hidden_layers=2, max_width=4)


@settings(max_examples=40)
@given(network=small_networks, seed=st.integers(0, 2**16), eps=st.sampled_from([0.05, 0.5]))
def test_triangle_lp_is_below_the_exact_minimum(network, seed, eps):
    dense, lower, upper, objective = random_problem(network, np.random.default_rng(seed), eps)
    bounds = interval_bounds(dense, lower, upper)
    relaxed = triangle_lp_minimum(dense, lower, upper, objective, bounds)
    exact = minimise_output(dense, lower, upper, objective)
    assert relaxed.value <= exact.attained + tolerance(exact.attained)
    assert relaxed.value <= exact.value + tolerance(exact.value)


@settings(max_examples=30)
@given(network=small_networks, seed=st.integers(0, 2**16), widen=st.floats(0.0, 1.0))
def test_looser_intermediate_bounds_give_a_lower_lp_minimum(network, seed, widen):
    rng = np.random.default_rng(seed)
    dense, lower, upper, objective = random_problem(network, rng, 0.3)
    bounds = interval_bounds(dense, lower, upper)[:dense.num_hidden_layers]
    wider = [(low - widen * rng.uniform(size=low.shape), high + widen * rng.uniform(
        size=high.shape)) for low, high in bounds]
    tight = triangle_lp_minimum(dense, lower, upper, objective, bounds)
    loose = triangle_lp_minimum(dense, lower, upper, objective, wider)
    assert loose.value <= tight.value + tolerance(tight.value)


@settings(max_examples=30)
@given(network=small_networks, seed=st.integers(0, 2**16))
def test_triangle_lp_is_exact_on_a_single_point(network, seed):
    """A zero-radius region has no unstable neuron: the LP returns f(x) itself."""
    dense, x, _, objective = random_problem(network, np.random.default_rng(seed), 0.0)
    bounds = interval_bounds(dense, x, x)
    relaxed = triangle_lp_minimum(dense, x, x, objective, bounds)
    value = float(dense.forward(x[None])[0] @ objective)
    assert abs(relaxed.value - value) <= tolerance(value)


def duplicated_neuron_network() -> Sequential:
    """f(x) = ReLU(x) − ReLU(x) ≡ 0, written with two hidden neurons."""
    first = Linear(1, 2, dtype=np.float64)
    first.weight.data[...] = [[1.0], [1.0]]
    first.bias.data[...] = 0.0
    second = Linear(2, 1, dtype=np.float64)
    second.weight.data[...] = [[1.0, -1.0]]
    second.bias.data[...] = 0.0
    return Sequential(first, ReLU(), second)


def test_triangle_lp_is_strictly_looser_than_exact_on_a_known_case():
    """On [−1, 1], the LP may take y₁ = ReLU(x) and y₂ on the triangle's top (x + 1)/2:
    min over x of max(x, 0) − (x + 1)/2 is −½ at x = 0, while f ≡ 0."""
    model = duplicated_neuron_network()
    lower, upper = np.array([-1.0]), np.array([1.0])
    bounds = interval_bounds(dense_network(model, (1,)), lower, upper)
    relaxed = triangle_lp_minimum(model, lower, upper, np.ones(1), bounds)
    exact = minimise_output(model, lower, upper, np.ones(1))
    assert abs(relaxed.value + 0.5) <= 1e-9
    assert abs(exact.value) <= 1e-9
    np.testing.assert_allclose(relaxed.point, [0.0], atol=1e-9)


def test_triangle_lp_with_an_empty_split_is_infeasible():
    model = duplicated_neuron_network()
    lower, upper = np.array([0.5]), np.array([1.0])
    bounds = interval_bounds(dense_network(model, (1,)), lower, upper)
    relaxed = triangle_lp_minimum(model, lower, upper, np.ones(1), bounds,
                                  splits={1: np.array([-1, 0])})
    assert relaxed.value == np.inf and relaxed.point is None
