"""Bounding the samples of a batch in groups (nobound/bounds/sample_groups.py) changes no
number: every field of the result, and the gradient through it, equals the one-batch
bound's (float64, up to the order of sums), for DeepPoly and alpha-CROWN, with population
parameters, splits and known intermediate bounds — on batches whose samples have very
different numbers of unstable neurons, where the groups are really formed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import nobound.bounds.api as api
from nobound.autodiff.tensor import Tensor
from nobound.backend import device_of, get_array_module, to_numpy
from nobound.bounds import BoundsPlan, Box, compute_bounds, margin_spec
from nobound.bounds.sample_groups import MIN_GROUP, padded_work, plan_groups
from nobound.nn.zoo import conv_net
from nobound.testing.bound_results import assert_same_bounds
from nobound.testing.strategies import networks, randomise

BATCH = 4 * MIN_GROUP
CLOSE = dict(rtol=1e-11, atol=1e-11)


def test_alike_samples_stay_one_batch():
    assert plan_groups(np.full((BATCH, 3), 7.0)) is None
    assert plan_groups(np.zeros((BATCH, 3))) is None   # nothing to pad
    assert plan_groups(np.zeros((BATCH, 0))) is None   # no layer needs rows


def test_groups_cover_every_sample_once_sorted_by_difficulty_and_save_work():
    rng = np.random.default_rng(0)
    counts = rng.gamma(1.0, 10.0, (BATCH, 3))
    groups = plan_groups(counts)
    assert groups is not None and len(groups) >= 2
    assert all(len(g) >= MIN_GROUP for g in groups)
    np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(BATCH))
    totals = [counts[g].sum(axis=1) for g in groups]
    assert all(a.max() <= b.min() for a, b in zip(totals, totals[1:], strict=False))
    assert padded_work(counts, groups) < 0.9 * padded_work(counts, [np.arange(BATCH)])


def spread_boxes(seed, input_shape, largest, classes):
    """BATCH boxes whose radii spread from 10⁻³ to ``largest`` in random order (from few to
    many unstable neurons), and margin rows for random labels."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.0, 1.0, (BATCH, *input_shape))
    radius = np.geomspace(1e-3, largest, BATCH)[rng.permutation(BATCH)].reshape(-1, 1, 1, 1)
    region = Box(Tensor(centre - radius), Tensor(centre + radius))
    return region, margin_spec(rng.integers(0, classes, BATCH), classes)


def network_and_region():
    model = conv_net((1, 8, 8), 3, [(4, 3, 2, 1), (6, 3, 1, 1)], [12], dtype=np.float64)
    randomise(model, 11, 1.0, 0.5)
    model.eval()
    return (model, *spread_boxes(3, (1, 8, 8), 0.3, 3))


def bound(model, region, spec, mode, **kwargs):
    return compute_bounds(model, region, spec=spec, plan=BoundsPlan(sample_groups=mode),
                          **kwargs)


def assert_same(grouped, whole):
    assert_same_bounds(grouped, whole, **CLOSE, linear=True)


@contextmanager
def counting_groups() -> Iterator[list[int]]:
    """The number of groups each compute_bounds call forms (1: none), while inside."""
    formed = []
    plan = api.plan_groups

    def spy(counts):
        groups = plan(counts)
        formed.append(1 if groups is None else len(groups))
        return groups

    api.plan_groups = spy
    try:
        yield formed
    finally:
        api.plan_groups = plan


@pytest.fixture
def groups_formed():
    """The number of groups each compute_bounds call formed (1: none)."""
    with counting_groups() as formed:
        yield formed


@pytest.mark.parametrize("method", ["deeppoly", "alpha-crown"])
def test_grouped_bounds_equal_the_whole_batch(method, groups_formed):
    model, region, spec = network_and_region()
    options = {"alpha_steps": 3} if method == "alpha-crown" else {}
    grouped = bound(model, region, spec, "auto", method=method, return_linear=True, **options)
    assert groups_formed == [4]
    whole = bound(model, region, spec, "never", method=method, return_linear=True, **options)
    assert_same(grouped, whole)


def test_grouped_gradients_equal_the_whole_batch(groups_formed):
    model, region, spec = network_and_region()
    gradients = {}
    for mode in ("auto", "never"):
        for _, parameter in model.named_parameters():
            parameter.grad = None
        result = bound(model, region, spec, mode, method="deeppoly")
        # weights per sample, so that a sample's bound in another's place would show
        weights = Tensor(np.arange(1.0, BATCH + 1.0).reshape(-1, 1))
        ((result.lower - 2.0 * result.upper) * weights).sum().backward()
        gradients[mode] = [p.grad.copy() for _, p in model.named_parameters()]
    assert groups_formed[0] > 1
    assert all(np.abs(g).max() > 0 for g in gradients["never"])
    for grouped, whole in zip(gradients["auto"], gradients["never"], strict=True):
        np.testing.assert_allclose(grouped, whole, **CLOSE)


def test_population_splits_and_known_bounds_follow_their_samples(groups_formed):
    model, region, spec = network_and_region()
    rng = np.random.default_rng(5)
    params = {name: Tensor(p.data + rng.normal(0.0, 0.02, (3, *p.shape)))
              for name, p in model.named_parameters()}
    whole = bound(model, region, spec, "never", method="deeppoly", params=params)
    first_relu = min(whole.intermediate)
    last_relu = max(whole.intermediate)
    low, high = whole.intermediate[last_relu]
    splits = {first_relu: rng.integers(-1, 2, whole.intermediate[first_relu][0].shape[1:])}
    known = {last_relu: (low.data + 0.01 * (high.data - low.data),
                         high.data - 0.01 * (high.data - low.data))}
    grouped = bound(model, region, spec, "auto", method="deeppoly", params=params,
                    splits=splits, intermediate=known)
    whole = bound(model, region, spec, "never", method="deeppoly", params=params,
                  splits=splits, intermediate=known)
    assert len(groups_formed) == 1 and groups_formed[0] > 1
    assert_same(grouped, whole)


@settings(max_examples=25, deadline=None)
@given(network=networks(), seed=st.integers(0, 2**32 - 1),
       spec_kind=st.sampled_from(["logits", "margin"]))
def test_grouped_bounds_equal_the_whole_batch_on_random_networks(network, seed, spec_kind):
    """Any small FC, conv or zoo-shaped network, a batch of 2·MIN_GROUP + 5 boxes whose
    radii spread from 10⁻³ to 1 (so the unstable counts differ): the groups, when the plan
    forms any, give the one-batch bounds."""
    rng = np.random.default_rng(seed)
    batch = 2 * MIN_GROUP + 5
    centre = rng.uniform(0.0, 1.0, (batch, *network.input_shape))
    radius = np.exp(rng.uniform(np.log(1e-3), 0.0, batch)).reshape(-1, 1, 1, 1)
    region = Box(Tensor(centre - radius), Tensor(centre + radius))
    spec = None if spec_kind == "logits" else \
        margin_spec(rng.integers(0, network.num_classes, batch), network.num_classes)
    with counting_groups() as formed:
        grouped = bound(network.model, region, spec, "auto", method="deeppoly")
    event("groups formed" if formed and formed[0] > 1 else "one batch")
    whole = bound(network.model, region, spec, "never", method="deeppoly")
    assert_same(grouped, whole)


def test_groups_on_the_device_equal_the_cpu(xp, groups_formed):
    """On CuPy (and its CPU guard, which refuses host arrays mixed into device work):
    the groups, splits and known bounds included, give the CPU's whole-batch bounds."""
    model, region, spec = network_and_region()
    cpu = bound(model, region, spec, "never", method="deeppoly")
    last_relu = max(cpu.intermediate)
    low, high = (b.data for b in cpu.intermediate[last_relu])
    known = {last_relu: (low + 0.01 * (high - low), high - 0.01 * (high - low))}
    first_relu = min(cpu.intermediate)
    splits = {first_relu: np.random.default_rng(2).integers(
        -1, 2, cpu.intermediate[first_relu][0].shape)}
    expected = bound(model, region, spec, "never", method="deeppoly", splits=splits,
                     intermediate=known)
    if xp is not np:
        model.to(device_of(xp))
    on_device = Box(Tensor(xp.asarray(region.lower.data)), Tensor(xp.asarray(region.upper.data)))
    # splits as host arrays (accepted as everywhere else), known bounds on the device
    result = bound(model, on_device, xp.asarray(spec), "auto", method="deeppoly",
                   splits=splits,
                   intermediate={k: tuple(xp.asarray(b) for b in v) for k, v in known.items()})
    assert groups_formed[-1] > 1
    assert get_array_module(result.lower.data) is xp
    for side in ("lower", "upper"):
        np.testing.assert_allclose(to_numpy(getattr(result, side).data),
                                   getattr(expected, side).data, **CLOSE)


def test_grouped_alpha_crown_tangent_slopes_follow_their_samples(groups_formed):
    """Sigmoid layers around a ReLU: alpha-CROWN's per-sample tangent slopes (what a proof
    records for the checker) come back in the samples' order."""
    from nobound.nn import Flatten, Linear, ReLU, Sequential, Sigmoid

    model = Sequential(Flatten(), Linear(4, 12, dtype=np.float64), Sigmoid(),
                       Linear(12, 12, dtype=np.float64), ReLU(),
                       Linear(12, 12, dtype=np.float64), Sigmoid(),
                       Linear(12, 3, dtype=np.float64))
    randomise(model, 1, 2.0, 0.5)
    model.eval()
    region, spec = spread_boxes(0, (1, 1, 4), 1.0, 3)
    grouped = bound(model, region, spec, "auto", method="alpha-crown", alpha_steps=3)
    whole = bound(model, region, spec, "never", method="alpha-crown", alpha_steps=3)
    assert groups_formed[0] > 1
    assert_same(grouped, whole)
    assert grouped.tangent_slopes.keys() == whole.tangent_slopes.keys() != set()
    for index, lines in whole.tangent_slopes.items():
        for mine, theirs in zip(grouped.tangent_slopes[index], lines, strict=True):
            np.testing.assert_allclose(mine.data, theirs.data, rtol=1e-10, atol=1e-10)
