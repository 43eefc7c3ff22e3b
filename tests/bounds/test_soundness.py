"""Soundness of every relaxation: no input of the region escapes its bounds.

For random small networks (FC, conv, the zoo's CNN3-tiny and a CNN7-like net scaled down;
with and without BatchNorm and Normalize), random boxes and specifications, every method
must satisfy lower ≤ C f(x) ≤ upper, and its pre-activation bounds must contain every
ReLU input, at

* sampled points: all box vertices of low-dimensional boxes (random vertices otherwise),
  points near the corners (Beta(½, ½)), uniform points, the centre;
* the extremes found by PGD *against the bound*: projected sign-gradient ascent and
  descent of every spec row, started from the best sampled point;

and its LinearBounds must hold pointwise (A_l x + b_l ≤ C f(x) ≤ A_u x + b_u). The only
slack is float64 round-off (``nobound.testing.soundness.ROUNDOFF``).

Each example checks all five methods on the same network and points, so sampling and
PGD are paid once; the test runs ``SOUNDNESS_EXAMPLES`` ≥ 2,000 examples in every profile.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.bounds import (
    DEFAULT_MEMORY_BUDGET,
    METHODS,
    Box,
    compute_bounds,
    layer_linear_bounds,
)
from nobound.nn import BatchNorm
from nobound.testing.falsify import extreme_spec_values
from nobound.testing.sampling import region_samples
from nobound.testing.soundness import assert_above, assert_below, relu_inputs
from nobound.testing.strategies import BoundProblem, bound_problems, conv_networks, fc_networks

SOUNDNESS_EXAMPLES = max(2000, settings.default.max_examples)
SAMPLES_PER_KIND = 8
PGD_STEPS = 5

# alpha-CROWN must be sound for every slope: start anywhere in [0, 1], take a few steps.
alpha_options = st.fixed_dictionaries({
    "alpha_init": st.sampled_from(["deeppoly", 0.0, 0.3, 0.5, 1.0]),
    "alpha_steps": st.integers(0, 2),
    "alpha_step_size": st.sampled_from([0.1, 0.5]),
})


def bound_every_method(problem: BoundProblem, return_linear: bool, alpha: dict,
                       splits: dict | None = None, **options) -> dict:
    region = Box(Tensor(problem.lower), Tensor(problem.upper))
    return {method: compute_bounds(problem.network.model, region, method=method,
                                   spec=problem.spec, return_linear=return_linear,
                                   splits=splits, **alpha, **options)
            for method in METHODS}


def check_output_bounds(result, values: np.ndarray, what: str) -> None:
    """values (B, N, K) against the result's (B, K) bounds."""
    assert_below(result.lower.numpy()[:, None], values, what)
    assert_above(result.upper.numpy()[:, None], values, what)


def check_intermediate(result, pre_activations: dict, batch: int,
                       keep: np.ndarray | None = None) -> None:
    """Every recorded ReLU input (of the points ``keep`` selects) lies within the
    method's pre-activation bounds."""
    assert set(result.intermediate) == set(pre_activations)
    for index, (lower, upper) in result.intermediate.items():
        values = pre_activations[index].reshape(batch, -1, *lower.shape[1:])
        for b in range(batch):
            inside = values[b] if keep is None else values[b, keep[b]]
            assert_below(lower.numpy()[b], inside, f"ReLU {index} input, element {b}")
            assert_above(upper.numpy()[b], inside, f"ReLU {index} input, element {b}")


def check_linear_bounds(result, points: np.ndarray, values: np.ndarray) -> None:
    """A_l x + b_l ≤ C f(x) ≤ A_u x + b_u at every point, for each batch element's x."""
    linear = result.linear
    batch, count = points.shape[:2]
    for n in range(count):
        low, high = linear.evaluate(points[:, n])
        assert_below(low.numpy(), values[:, n], "linear lower bound A_l x + b_l")
        assert_above(high.numpy(), values[:, n], "linear upper bound A_u x + b_u")


def collect_failures(checks: dict) -> None:
    """Run each method's checks; report every failing method at once."""
    failures = []
    for method, check in checks.items():
        try:
            check()
        except AssertionError as error:
            failures.append(f"{method}: {error}")
    assert not failures, "unsound bounds:\n" + "\n".join(failures)


@settings(max_examples=SOUNDNESS_EXAMPLES)
@given(problem=bound_problems(), seed=st.integers(0, 2**32 - 1), alpha=alpha_options,
       return_linear=st.booleans(), record_graph=st.booleans(),
       budget=st.sampled_from([DEFAULT_MEMORY_BUDGET, 512]))
def test_every_relaxation_is_sound_on_samples_and_against_pgd(problem, seed, alpha,
                                                              return_linear, record_graph,
                                                              budget):
    """``budget``: a tiny memory budget forces back-substitution rows into chunks."""
    rng = np.random.default_rng(seed)
    model = problem.network.model
    if record_graph:
        results = bound_every_method(problem, return_linear, alpha,
                                     memory_budget_bytes=budget)
    else:  # alpha-CROWN takes a different (non-differentiable) path without a graph
        with no_grad():
            results = bound_every_method(problem, return_linear, alpha,
                                         memory_budget_bytes=budget)
    points = region_samples(problem.lower, problem.upper, SAMPLES_PER_KIND, rng)
    batch, count = points.shape[:2]
    values = problem.spec_values(points)
    spec = np.ascontiguousarray(problem.spec_matrix)
    rows = np.arange(batch)[:, None]
    extremes = extreme_spec_values(model, problem.lower, problem.upper, spec,
                                   points[rows, values.argmin(axis=1)],
                                   points[rows, values.argmax(axis=1)], steps=PGD_STEPS)
    pre_activations = relu_inputs(model, points.reshape(batch * count, *points.shape[2:]))

    def checks_for(result):
        def check():
            check_output_bounds(result, values, "sampled points")
            assert_below(result.lower.numpy(), extremes.minimum, "PGD minimum")
            assert_above(result.upper.numpy(), extremes.maximum, "PGD maximum")
            check_intermediate(result, pre_activations, batch)
            if result.linear is not None:
                check_linear_bounds(result, points, values)
        return check

    collect_failures({method: checks_for(result) for method, result in results.items()})


def random_splits(shapes: dict, rng: np.random.Generator) -> dict:
    """Force a random third of the neurons of each ReLU layer to ≥ 0 and a third to ≤ 0."""
    return {index: rng.choice(np.array([-1, 0, 1], np.int8), size=shape)
            for index, shape in shapes.items()}


def satisfies_splits(pre_activations: dict, splits: dict, batch: int) -> np.ndarray:
    """(B, N) mask of the points whose ReLU inputs have the signs the splits force."""
    keep = None
    for index, signs in splits.items():
        values = pre_activations[index].reshape(batch, -1, *signs.shape[1:])
        sign = signs[:, None]
        ok = np.where(sign > 0, values >= 0, np.where(sign < 0, values <= 0, True))
        ok = ok.reshape(batch, values.shape[1], -1).all(axis=-1)
        keep = ok if keep is None else keep & ok
    return keep


@settings(max_examples=300)
@given(problem=bound_problems(network_strategy=st.one_of(fc_networks(), conv_networks()),
                              radii=[0.03, 0.1, 0.3, 1.0]),
       seed=st.integers(0, 2**32 - 1), alpha=alpha_options)
def test_bounds_with_splits_hold_on_the_split_sub_region(problem, seed, alpha):
    """With splits, the bounds need only hold where the split signs hold: check there."""
    rng = np.random.default_rng(seed)
    points = region_samples(problem.lower, problem.upper, 64, rng)
    batch, count = points.shape[:2]
    pre_activations = relu_inputs(problem.network.model,
                                  points.reshape(batch * count, *points.shape[2:]))
    splits = random_splits({index: (batch, *values.shape[1:])
                            for index, values in pre_activations.items()}, rng)
    results = bound_every_method(problem, False, alpha, splits)
    keep = satisfies_splits(pre_activations, splits, batch) if splits else \
        np.ones((batch, count), bool)
    values = problem.spec_values(points)

    def checks_for(result):
        def check():
            for b in range(batch):
                inside = values[b, keep[b]]
                assert_below(result.lower.numpy()[b], inside, f"split sub-region, element {b}")
                assert_above(result.upper.numpy()[b], inside, f"split sub-region, element {b}")
            check_intermediate(result, pre_activations, batch, keep)
        return check

    collect_failures({method: checks_for(result) for method, result in results.items()})


def freeze_batch_statistics(model) -> None:
    """Turn train-mode BatchNorms into eval-mode ones with the last batch's statistics:
    the fixed affine map the relaxations use in train mode."""
    for layer in model.layers:
        if isinstance(layer, BatchNorm) and layer.training:
            mean, var = layer.last_statistics
            layer.running_mean = mean.numpy().reshape(-1)
            layer.running_var = var.numpy().reshape(-1)
    model.eval()


@settings(max_examples=200)
@given(problem=bound_problems(network_strategy=conv_networks(), max_batch=3),
       seed=st.integers(0, 2**32 - 1))
def test_batchnorm_in_train_mode_bounds_the_clean_batch_statistics_network(problem, seed):
    """In train mode BatchNorm uses the statistics of the last clean forward pass."""
    model = problem.network.model
    if not any(isinstance(layer, BatchNorm) for layer in model.layers):
        return
    model.train()
    with no_grad():
        model(Tensor(problem.centre))
    results = bound_every_method(problem, False, {"alpha_steps": 1})
    freeze_batch_statistics(model)
    rng = np.random.default_rng(seed)
    points = region_samples(problem.lower, problem.upper, SAMPLES_PER_KIND, rng)
    values = problem.spec_values(points)
    collect_failures({method: (lambda r=result: check_output_bounds(r, values, "train-mode BN"))
                      for method, result in results.items()})


@settings(max_examples=150)
@given(problem=bound_problems(network_strategy=st.one_of(fc_networks(), conv_networks())),
       seed=st.integers(0, 2**32 - 1), method=st.sampled_from(METHODS))
def test_linear_bounds_of_every_layer_hold_pointwise(problem, seed, method):
    """``layer_linear_bounds`` of each layer's output: A_l x + b_l ≤ z(x) ≤ A_u x + b_u."""
    model = problem.network.model
    rng = np.random.default_rng(seed)
    points = region_samples(problem.lower, problem.upper, SAMPLES_PER_KIND, rng)
    batch, count = points.shape[:2]
    region = Box(Tensor(problem.lower), Tensor(problem.upper))
    outputs = Tensor(points.reshape(batch * count, *points.shape[2:]))
    for layer_index, layer in enumerate(model.layers):
        with no_grad():
            outputs = layer(outputs)
        linear = layer_linear_bounds(model, region, layer_index, method=method)
        values = outputs.numpy().reshape(batch, count, -1)
        for n in range(count):
            low, high = linear.evaluate(points[:, n])
            assert_below(low.numpy(), values[:, n], f"layer {layer_index} lower")
            assert_above(high.numpy(), values[:, n], f"layer {layer_index} upper")


@settings(max_examples=200)
@given(problem=bound_problems(), seed=st.integers(0, 2**32 - 1), alpha=alpha_options)
def test_bounds_given_valid_intermediate_bounds_stay_sound(problem, seed, alpha):
    """Intersecting with known valid bounds (here IBP's) must not break soundness."""
    model = problem.network.model
    region = Box(Tensor(problem.lower), Tensor(problem.upper))
    known = compute_bounds(model, region, method="ibp").intermediate
    intermediate = {index: (lower.numpy(), upper.numpy()) for index, (lower, upper)
                    in known.items()}
    results = {method: compute_bounds(model, region, method=method, spec=problem.spec,
                                      intermediate=intermediate, **alpha)
               for method in METHODS}
    rng = np.random.default_rng(seed)
    points = region_samples(problem.lower, problem.upper, SAMPLES_PER_KIND, rng)
    batch, count = points.shape[:2]
    values = problem.spec_values(points)
    pre_activations = relu_inputs(model, points.reshape(batch * count, *points.shape[2:]))

    def checks_for(result):
        def check():
            check_output_bounds(result, values, "with given intermediate bounds")
            check_intermediate(result, pre_activations, batch)
        return check

    collect_failures({method: checks_for(result) for method, result in results.items()})


@settings(max_examples=150)
@given(problem=bound_problems(network_strategy=st.one_of(fc_networks(), conv_networks())),
       seed=st.integers(0, 2**32 - 1), population=st.integers(1, 3),
       noise=st.sampled_from([0.01, 0.3]))
def test_population_bounds_hold_for_every_member(problem, seed, population, noise):
    """P perturbed networks in one call (RGS, PGPE): member p's bounds hold for member p."""
    model = problem.network.model
    rng = np.random.default_rng(seed)
    params = {name: Tensor(parameter.data[None] + noise * rng.normal(
        size=(population, *parameter.shape))) for name, parameter in model.named_parameters()}
    region = Box(Tensor(problem.lower), Tensor(problem.upper))
    results = {method: compute_bounds(model, region, method=method, spec=problem.spec,
                                      params=params, alpha_steps=1)
               for method in METHODS}
    points = region_samples(problem.lower, problem.upper, SAMPLES_PER_KIND, rng)
    batch, count = points.shape[:2]
    flat = Tensor(points.reshape(batch * count, *points.shape[2:]))
    with no_grad():
        logits = model(flat, params).numpy().reshape(population, batch, count, -1)
    values = np.einsum("bkc,pbnc->pbnk", problem.spec_matrix, logits)

    def checks_for(result):
        def check():
            assert result.lower.shape == (population, batch, values.shape[-1])
            assert_below(result.lower.numpy()[:, :, None], values, "population lower")
            assert_above(result.upper.numpy()[:, :, None], values, "population upper")
        return check

    collect_failures({method: checks_for(result) for method, result in results.items()})
