"""The dense form of a network computes the network; interval bounds are valid and tight
on one affine layer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.exact import dense_network, interval_bounds
from nobound.nn import BatchNorm, Linear, ReLU, Sequential
from nobound.testing.sampling import region_samples
from nobound.testing.soundness import relu_inputs
from nobound.testing.strategies import networks


@settings(max_examples=40)
@given(network=networks(), seed=st.integers(0, 2**16))
def test_dense_form_reproduces_forward_and_pre_activations(network, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 2.0, (5, *network.input_shape))
    dense = dense_network(network.model, network.input_shape)
    with no_grad():
        expected = network.model(Tensor(x)).data
    np.testing.assert_allclose(dense.forward(x), expected, rtol=1e-12, atol=1e-12)
    recorded = relu_inputs(network.model, x)
    assert dense.relu_layers == sorted(recorded)
    for k, layer in enumerate(dense.relu_layers):
        assert dense.relu_shapes[k] == recorded[layer].shape[1:]
        np.testing.assert_allclose(dense.pre_activations(x.reshape(5, -1))[k],
                                   recorded[layer].reshape(5, -1), rtol=1e-12, atol=1e-12)


@settings(max_examples=40)
@given(network=networks(), seed=st.integers(0, 2**16), eps=st.sampled_from([0.0, 0.05, 0.5]))
def test_interval_bounds_contain_every_sampled_pre_activation(network, seed, eps):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.0, 1.0, network.input_shape)
    dense = dense_network(network.model, network.input_shape)
    bounds = interval_bounds(dense, centre - eps, centre + eps)
    points = region_samples((centre - eps)[None], (centre + eps)[None], 32, rng)[0]
    for (low, high), values in zip(bounds, dense.pre_activations(points.reshape(len(points), -1)),
                                   strict=True):
        slack = 1e-12 * (1 + np.abs(values))
        assert np.all(low - slack <= values) and np.all(values <= high + slack)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**16), inputs=st.integers(1, 5), outputs=st.integers(1, 4))
def test_interval_bound_of_one_affine_layer_is_attained_at_vertices(seed, inputs, outputs):
    """Eq. (3) is exact for one affine layer: each bound is the value at some vertex."""
    rng = np.random.default_rng(seed)
    layer = Linear(inputs, outputs, dtype=np.float64)
    layer.weight.data[...] = rng.normal(size=(outputs, inputs))
    layer.bias.data[...] = rng.normal(size=outputs)
    dense = dense_network(Sequential(layer), (inputs,))
    lower = rng.uniform(-1, 0, inputs)
    upper = lower + rng.uniform(0, 2, inputs)
    (low, high), = interval_bounds(dense, lower, upper)
    vertices = np.array([np.where(choice, upper, lower)
                         for choice in itertools.product((False, True), repeat=inputs)])
    values = dense.forward(vertices)
    np.testing.assert_allclose(low, values.min(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(high, values.max(axis=0), rtol=1e-12, atol=1e-12)


def test_splits_clamp_the_split_neurons_and_only_them():
    layer = Linear(2, 3, dtype=np.float64)
    layer.weight.data[...] = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    dense = dense_network(Sequential(layer, ReLU(), Linear(3, 1, dtype=np.float64)), (2,))
    box = (np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    (low, high), _ = interval_bounds(dense, *box, splits={1: np.array([1, -1, 0])})
    np.testing.assert_array_equal(low, [0.0, -1.0, -2.0])
    np.testing.assert_array_equal(high, [1.0, 0.0, 2.0])


def test_batchnorm_in_train_mode_is_refused():
    model = Sequential(Linear(2, 2, dtype=np.float64), BatchNorm(2, spatial=False,
                                                                 dtype=np.float64))
    with pytest.raises(ValueError, match="eval mode"):
        dense_network(model.train(), (2,))
