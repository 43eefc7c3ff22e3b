"""alpha-CROWN's optimised intermediate bounds (nobound.bounds.alpha_crown, module doc).

Every bound of an activation's input neurons, for *any* slopes of the layers below (random
α of ReLUs, random θ of S-shape tangent points, per row and side), must hold at the box's
vertices and at sampled points; the tightened bounds of :func:`optimised_bounds` must lie
within DeepPoly's, hold everywhere sampled, and gain on a deep Sigmoid net.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_soundness_pooling_s_shapes import ACTIVATIONS, deep_s_shape_net, randomise

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.bounds import Box, compute_bounds
from nobound.bounds.alpha_crown import optimised_bounds, optimised_model_bounds
from nobound.bounds.alpha_crown_intermediate import neuron_bounds
from nobound.bounds.alpha_slopes import initial_slopes, initial_tangents, tangent_ranges
from nobound.bounds.deeppoly import deeppoly_relaxations
from nobound.bounds.network import Network
from nobound.bounds.plan import BoundsPlan
from nobound.nn import Linear, ReLU, Sequential, Sigmoid, Tanh
from nobound.testing.sampling import region_samples
from nobound.testing.soundness import assert_above, assert_below


def mixed_net(rng: np.random.Generator, activations: list[str], inputs: int, width: int,
              scale: float) -> Sequential:
    """Linear layers of ``width`` each followed by one of ``activations``, then 3 outputs."""
    layers: list = []
    previous = inputs
    for name in activations:
        layers += [Linear(previous, width, dtype=np.float64), ACTIVATIONS[name]()]
        previous = width
    return randomise(Sequential(*layers, Linear(previous, 3, dtype=np.float64)), rng, scale)


def activation_inputs(model: Sequential, points: np.ndarray) -> dict[int, np.ndarray]:
    """{activation layer index: its input at ``points`` (N, n)}."""
    seen = {}
    with no_grad():
        out = Tensor(points)
        for index, layer in enumerate(model.layers):
            if isinstance(layer, ReLU | Sigmoid | Tanh):
                seen[index] = out.data
            out = layer(out)
    return seen


def problem(seed: int, activations: list[str], eps: float) -> tuple:
    rng = np.random.default_rng(seed)
    model = mixed_net(rng, activations, 3, 5, 1.5)
    center = rng.normal(size=(2, 3))
    box = Box(Tensor(center - eps), Tensor(center + eps))
    points = region_samples(box.lower.data, box.upper.data, 150, rng)  # vertices too
    seen = [activation_inputs(model, points[b]) for b in range(2)]
    return rng, model, box, points, seen


@settings(max_examples=max(30, settings.default.max_examples), deadline=None)
@given(st.integers(0, 2**31 - 1),
       st.lists(st.sampled_from(sorted(ACTIVATIONS)), min_size=2, max_size=3),
       st.sampled_from([0.1, 0.6, 2.0]))
def test_neuron_bounds_hold_for_any_slopes_below(seed, activations, eps) -> None:
    # the bound of every input neuron of every activation after the first, with random
    # per-row slopes below (α ∈ [0, 1] of a ReLU, θ ∈ [0, 1] of an S-shape tangent point)
    rng, model, box, _, seen = problem(seed, activations, eps)
    network, plan = Network.from_model(model, (3,)), BoundsPlan()
    with no_grad():
        relaxations, recorded = deeppoly_relaxations(network, box, None, None, plan)
        ranges = tangent_ranges(network, relaxations, recorded)
        for index in sorted(recorded)[1:]:
            neurons = np.arange(5)
            below = {i: r for i, r in relaxations.items() if i < index}
            slopes = initial_slopes(below, 5, "deeppoly")
            initial_tangents({i: r for i, r in ranges.items() if i < index}, 5, "deeppoly",
                              slopes)
            for trial in range(4):
                if trial:
                    for side in slopes:
                        for key, value in slopes[side].items():
                            slopes[side][key] = Tensor(rng.uniform(size=value.shape))
                bounds = neuron_bounds(network, (network, box), relaxations, ranges, index,
                                        neurons, plan, slopes)
                for b in range(2):
                    assert_below(bounds["lower"].data[0, b], seen[b][index],
                                 f"layer {index} lower, trial {trial}")
                    assert_above(bounds["upper"].data[0, b], seen[b][index],
                                 f"layer {index} upper, trial {trial}")


@settings(max_examples=max(25, settings.default.max_examples), deadline=None)
@given(st.integers(0, 2**31 - 1),
       st.lists(st.sampled_from(sorted(ACTIVATIONS)), min_size=2, max_size=3),
       st.sampled_from([0.1, 0.6, 2.0]), st.sampled_from([1, 8]))
def test_tightened_bounds_lie_within_deeppolys_and_hold(seed, activations, eps,
                                                        steps) -> None:
    rng, model, box, points, seen = problem(seed, activations, eps)
    spec = Tensor(rng.normal(size=(2, 2, 3)))
    network, plan = Network.from_model(model, (3,)), BoundsPlan()
    with no_grad():
        deeppoly = compute_bounds(model, box, method="deeppoly", spec=spec)
        result = optimised_bounds(network, box, spec, None, None, plan, False,
                                  intermediate_steps=steps)
        outputs = model(Tensor(points.reshape(-1, 3))).data.reshape(2, -1, 3)
    values = np.einsum("brk,bsk->bsr", spec.data, outputs)
    bounds = result.bounds
    assert_below(bounds.lower.data[0][:, None], values, "output lower")
    assert_above(bounds.upper.data[0][:, None], values, "output upper")
    for index, (low, high) in bounds.intermediate.items():
        before_low, before_high = (t.data for t in deeppoly.intermediate[index])
        assert np.all(low.data[0] >= before_low) and np.all(high.data[0] <= before_high)
        for b in range(2):
            assert_below(low.data[0, b], seen[b][index], f"tightened lower of {index}")
            assert_above(high.data[0, b], seen[b][index], f"tightened upper of {index}")
    for layer in result.tightened:
        low, high = (t.data[0].reshape(2, -1) for t in bounds.intermediate[layer.index])
        # an applied bound is the one kept; each row's bound holds, applied or not
        for side, kept, own in (("lower", low, layer.lower), ("upper", high, layer.upper)):
            applied = layer.applied[side][0]
            np.testing.assert_array_equal(kept[:, layer.neurons][applied], own[0][applied])
            for b in range(2):
                check = assert_below if side == "lower" else assert_above
                check(own[0, b], seen[b][layer.index][:, layer.neurons], f"{side} rows")
        assert layer.steps <= steps


def deep_net_and_box(seed: int, activation: type, layers: int) -> tuple[Sequential, Box]:
    """A deep S-shape net (4 inputs, ``layers`` × 10 neurons) and a box of radius 0.3."""
    rng = np.random.default_rng(seed)
    model = deep_s_shape_net(rng, activation, 4, [10] * layers, 1.5)
    x = rng.uniform(-1, 1, 4)
    return model, Box(Tensor((x - 0.3)[None]), Tensor((x + 0.3)[None]))


def test_tightening_gains_on_a_deep_sigmoid_net() -> None:
    # DeepPoly's intermediate bounds of a deep Sigmoid net are loose: tightening them
    # raises the output bound beyond alpha-CROWN's on DeepPoly's bounds
    model, box = deep_net_and_box(6, Sigmoid, 4)
    spec = np.array([[[1.0, -1.0, 0.0]]])
    with no_grad():
        plain = compute_bounds(model, box, method="alpha-crown", spec=spec)
        tight = optimised_model_bounds(model, box, spec, intermediate_steps=20)
    assert float(tight.bounds.lower.data.ravel()[0]) > float(plain.lower.data.ravel()[0]) + 0.1
    assert [layer.index for layer in tight.tightened] == [3, 5, 7]
    for layer in tight.tightened:
        assert layer.applied["lower"].any() and layer.applied["upper"].any()
        low, high = tight.bounds.intermediate[layer.index]
        before_low, before_high = plain.intermediate[layer.index]
        assert np.sum(high.data - low.data) < np.sum(before_high.data - before_low.data)


def test_a_past_deadline_takes_no_step_and_stays_sound() -> None:
    # each layer still gets its starting point's bound (DeepPoly's on the layers below)
    model, box = deep_net_and_box(6, Tanh, 3)
    with no_grad():
        late = optimised_model_bounds(model, box, None, intermediate_steps=20, deadline=0.0)
        deeppoly = compute_bounds(model, box, method="deeppoly")
    assert late.tightened and all(layer.steps == 0 for layer in late.tightened)
    for index, (low, high) in late.bounds.intermediate.items():
        assert np.all(low.data[0] >= deeppoly.intermediate[index][0].data)
        assert np.all(high.data[0] <= deeppoly.intermediate[index][1].data)


def test_layers_whose_slopes_would_not_fit_the_memory_budget_keep_their_bounds() -> None:
    model, box = deep_net_and_box(6, Sigmoid, 4)
    with no_grad():
        # 10 rows × 10 neurons × 2 lines × 2 sides × 8 bytes × 4 copies fit layer 3's;
        # layer 5's search has twice as many slopes
        small = optimised_model_bounds(model, box, None, plan=BoundsPlan(13_000))
    assert [layer.index for layer in small.tightened] == [3]
