"""Batched population evaluation equals the loop over members; noise comes from seeds."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff.tensor import Tensor
from nobound.backend import device_of, to_numpy
from nobound.nn.init import kaiming_uniform
from nobound.nn.zoo import build_model
from nobound.training.execution_plan import member_chunking
from nobound.training.losses import cross_entropy
from nobound.training.perturbation import ParameterLayout, standard_normal_directions
from nobound.training.population import (
    bytes_per_member,
    evaluate_members_one_by_one,
    evaluate_population,
)


def tiny_network(xp, seed=0):
    model = build_model("cnn3_tiny", (1, 12, 12), 4, dtype=np.float64)
    kaiming_uniform(model, seed)
    if xp is not np:
        model.to(device_of(xp))
    return model


def perturbed_population(xp, model, count, sigma=0.05, seed=1):
    params = dict(model.named_parameters())
    layout = ParameterLayout.of(params)
    center = layout.flatten(params)
    z = standard_normal_directions(seed, 0, 0, range(count), layout.size, "test", xp=xp,
                                   dtype=center.dtype)
    return layout, center[None, :] + sigma * z


def test_layout_round_trips_named_arrays_and_populations(xp):
    model = tiny_network(xp)
    params = {name: p.data for name, p in model.named_parameters()}
    layout = ParameterLayout.of(params)
    assert layout.size == model.num_parameters()
    back = layout.unflatten(layout.flatten(params))
    for name in params:
        np.testing.assert_array_equal(to_numpy(back[name]), to_numpy(params[name]))
    population = xp.stack([layout.flatten(params), 2 * layout.flatten(params)])
    named = layout.unflatten(population)
    assert named["0.weight"].shape == (2,) + params["0.weight"].shape
    assert bool(xp.all(layout.flatten_population(named) == population))


def test_noise_rows_are_regenerated_identically_in_any_subset():
    full = standard_normal_directions(3, 2, 5, range(6), 10, "pgpe-noise")
    again = standard_normal_directions(3, 2, 5, [4, 1], 10, "pgpe-noise")
    np.testing.assert_array_equal(again, full[[4, 1]])
    other_step = standard_normal_directions(3, 2, 6, range(6), 10, "pgpe-noise")
    other_name = standard_normal_directions(3, 2, 5, range(6), 10, "rgs-noise")
    assert not np.array_equal(full, other_step) and not np.array_equal(full, other_name)
    assert abs(full.mean()) < 0.5 and 0.5 < full.std() < 1.5


def test_batched_natural_loss_equals_the_member_loop(xp):
    model = tiny_network(xp)
    rng = np.random.default_rng(2)
    x = xp.asarray(rng.uniform(size=(5, 1, 12, 12)))
    targets = xp.asarray(rng.integers(0, 4, size=5))
    layout, vectors = perturbed_population(xp, model, 7)

    def loss_of(params):
        return cross_entropy(model(Tensor(x), params), targets)

    batched = evaluate_population(loss_of, layout, lambda a, b: vectors[a:b], 7)
    chunked = evaluate_population(loss_of, layout, lambda a, b: vectors[a:b], 7, chunk_size=3)
    loop = evaluate_members_one_by_one(loss_of, layout, vectors)
    np.testing.assert_allclose(batched, loop, rtol=1e-12)
    np.testing.assert_allclose(chunked, loop, rtol=1e-12)
    assert np.ptp(loop) > 0  # the members really differ


def test_chunk_size_respects_budget_and_pairing():
    assert member_chunking(100.0, 1050.0, 256, 1) == (10, 1)
    assert member_chunking(100.0, 1050.0, 256, 1, multiple=4) == (8, 1)
    assert member_chunking(100.0, 50.0, 256, 1, multiple=2) == (2, 1)  # always progress
    assert member_chunking(1.0, 1e9, 256, 1) == (256, 1)


def test_measured_member_footprint_grows_with_the_batch():
    model = tiny_network(np)
    layout, vectors = perturbed_population(np, model, 2)

    def footprint(batch):
        x = np.random.default_rng(3).uniform(size=(batch, 1, 12, 12))
        targets = np.zeros(batch, dtype=np.int64)
        return bytes_per_member(lambda p: cross_entropy(model(Tensor(x), p), targets),
                                layout, lambda a, b: vectors[a:b])

    small, large = footprint(8), footprint(64)
    assert large > 4 * small
    # at least the first conv's float64 activations of one member: B · 2·6·6 values
    assert large >= 64 * 2 * 6 * 6 * 8


@pytest.mark.parametrize("count", [1, 4])
def test_population_of_one_or_more_keeps_the_population_axis(count):
    model = tiny_network(np)
    layout, vectors = perturbed_population(np, model, count)
    x = np.random.default_rng(4).uniform(size=(3, 1, 12, 12))
    losses = evaluate_population(lambda p: cross_entropy(model(Tensor(x), p), np.zeros(3, int)),
                                 layout, lambda a, b: vectors[a:b], count)
    assert losses.shape == (count,)
