"""The big-M MILP finds the exact minimum: it agrees with enumeration of activation patterns,
is below every sampled value and is attained by its minimiser."""

from __future__ import annotations

import numpy as np
from exact_problems import random_problem, tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.exact import (
    dense_network,
    enumerate_minimum,
    exact_output_range,
    interval_bounds,
    minimise_output,
)
from nobound.nn import Linear, ReLU, Sequential
from nobound.testing.sampling import region_samples
from nobound.testing.strategies import conv_networks, fc_networks

tiny_networks = fc_networks(max_inputs=2, max_hidden_layers=2, max_width=3)


def grid(lower: np.ndarray, upper: np.ndarray, points_per_axis: int = 101) -> np.ndarray:
    axes = [np.linspace(lo, hi, points_per_axis) for lo, hi in zip(lower.reshape(-1),
                                                                    upper.reshape(-1),
                                                                    strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, lower.size)


@settings(max_examples=40)
@given(network=tiny_networks, seed=st.integers(0, 2**16), eps=st.sampled_from([0.05, 0.5, 2.0]))
def test_milp_minimum_matches_enumeration_and_dense_grid(network, seed, eps):
    dense, lower, upper, objective = random_problem(network, np.random.default_rng(seed), eps)
    exact = minimise_output(dense, lower, upper, objective)
    enumerated = enumerate_minimum(dense, lower, upper, objective)
    assert exact.optimal
    assert abs(exact.value - enumerated.value) <= tolerance(exact.value)
    assert abs(exact.attained - exact.value) <= tolerance(exact.value)
    assert np.all(lower <= exact.minimiser) and np.all(exact.minimiser <= upper)
    sampled = dense.forward(grid(lower, upper)) @ objective
    assert exact.value <= sampled.min() + tolerance(exact.value)
    assert exact.attained <= sampled.min() + tolerance(exact.value)


@settings(max_examples=20)
@given(network=conv_networks(max_size=4, max_hidden=3), seed=st.integers(0, 2**16),
       eps=st.sampled_from([0.02, 0.2]))
def test_milp_range_of_conv_nets_encloses_every_sample(network, seed, eps):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.0, 1.0, network.input_shape)
    lower, upper = centre - eps, centre + eps
    spec = rng.normal(size=(2, network.num_classes))
    minima, maxima, low_answers, high_answers = exact_output_range(network.model, lower,
                                                                   upper, spec)
    points = region_samples(lower[None], upper[None], 200, rng)[0]
    values = dense_network(network.model, network.input_shape).forward(points) @ spec.T
    for k in range(len(spec)):
        assert minima[k] <= values[:, k].min() + tolerance(minima[k])
        assert maxima[k] >= values[:, k].max() - tolerance(maxima[k])
        assert abs(low_answers[k].attained - minima[k]) <= tolerance(minima[k])
        assert abs(-high_answers[k].attained - maxima[k]) <= tolerance(maxima[k])


@settings(max_examples=30)
@given(seed=st.integers(0, 2**16), inputs=st.integers(1, 4))
def test_milp_of_a_linear_network_is_the_closed_form(seed, inputs):
    """min over a box of a·x + b is a·(l+u)/2 − |a|·(u−l)/2 + b."""
    rng = np.random.default_rng(seed)
    first, second = Linear(inputs, 3, dtype=np.float64), Linear(3, 2, dtype=np.float64)
    for layer in (first, second):
        layer.weight.data[...] = rng.normal(size=layer.weight.shape)
        layer.bias.data[...] = rng.normal(size=layer.bias.shape)
    model = Sequential(first, second)
    lower = rng.uniform(-1, 0, inputs)
    upper = lower + rng.uniform(0, 2, inputs)
    objective = rng.normal(size=2)
    slope = (second.weight.data @ first.weight.data).T @ objective
    offset = objective @ (second.weight.data @ first.bias.data + second.bias.data)
    closed_form = slope @ (lower + upper) / 2 - np.abs(slope) @ (upper - lower) / 2 + offset
    exact = minimise_output(model, lower, upper, objective)
    assert abs(exact.value - closed_form) <= tolerance(closed_form)


@settings(max_examples=30)
@given(network=tiny_networks, seed=st.integers(0, 2**16))
def test_splitting_a_neuron_partitions_the_minimum(network, seed):
    """min over the region = min(min over {z ≥ 0}, min over {z ≤ 0}), each ≥ the whole."""
    rng = np.random.default_rng(seed)
    dense, lower, upper, objective = random_problem(network, rng, 0.5)
    if not dense.relu_layers:
        return
    whole = minimise_output(dense, lower, upper, objective)
    layer = dense.relu_layers[0]
    neuron = int(rng.integers(0, dense.weights[0].shape[0]))
    parts = []
    for sign in (1, -1):
        signs = np.zeros(dense.weights[0].shape[0], np.int8)
        signs[neuron] = sign
        part = minimise_output(dense, lower, upper, objective, splits={layer: signs})
        parts.append(part.value)
        assert part.value >= whole.value - tolerance(whole.value)
        if part.minimiser is not None:
            pre_activation = dense.pre_activations(part.minimiser.reshape(1, -1))[0][0, neuron]
            assert sign * pre_activation >= -1e-6
    assert abs(min(parts) - whole.value) <= tolerance(whole.value)


def test_an_empty_split_region_has_an_infinite_minimum():
    first = Linear(1, 1, dtype=np.float64)
    first.weight.data[...] = 1.0
    first.bias.data[...] = 5.0  # z = x + 5 > 0 on [0, 1]
    model = Sequential(first, ReLU(), Linear(1, 1, dtype=np.float64))
    answer = minimise_output(model, np.zeros(1), np.ones(1), np.ones(1),
                             splits={1: np.array([-1])})
    assert answer.value == np.inf and answer.minimiser is None
    assert enumerate_minimum(model, np.zeros(1), np.ones(1), np.ones(1),
                             splits={1: np.array([-1])}).value == np.inf


def test_milp_uses_interval_bounds_that_contain_the_minimiser_pre_activations():
    """Big-M constants must not cut off the true minimiser: check on a hand-made net."""
    first = Linear(2, 2, dtype=np.float64)
    first.weight.data[...] = [[1.0, -1.0], [1.0, 1.0]]
    first.bias.data[...] = [0.0, -1.0]
    second = Linear(2, 1, dtype=np.float64)
    second.weight.data[...] = [[-1.0, 2.0]]
    second.bias.data[...] = [0.0]
    model = Sequential(first, ReLU(), second)
    lower, upper = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    # f = 2 ReLU(x1 + x2 − 1) − ReLU(x1 − x2); min at x1 = 1, x2 = −1 gives −2.
    answer = minimise_output(model, lower, upper, np.ones(1))
    assert abs(answer.value + 2.0) <= tolerance(2.0)
    np.testing.assert_allclose(answer.minimiser, [1.0, -1.0], atol=1e-7)
    (low, high), _ = interval_bounds(dense_network(model, (2,)), lower, upper)
    np.testing.assert_array_equal(low, [-2.0, -3.0])
    np.testing.assert_array_equal(high, [2.0, 1.0])
