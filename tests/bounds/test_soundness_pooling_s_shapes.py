"""Soundness of every relaxation on networks with Sigmoid, Tanh and MaxPool2d.

As for the ReLU (tests/bounds/test_soundness.py): random small networks, random boxes and
specifications; every method in ``METHODS`` must satisfy lower ≤ C f(x) ≤ upper at box
vertices (low dimensions), near-corner and uniform points, and its recorded bounds of every
activation's input must contain the input the activation really receives. The two lines of
an S-shape and the max relaxation are also checked on their own, densely, on boxes that lie
in the convex part, the concave part, across 0, or are a single point.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.bounds import METHODS, Box, compute_bounds
from nobound.bounds.activations import SigmoidStep, TanhStep
from nobound.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, Sigmoid, Tanh
from nobound.testing.sampling import region_samples
from nobound.testing.soundness import assert_above, assert_below

ACTIVATIONS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}


def randomise(model: Sequential, rng: np.random.Generator, scale: float) -> Sequential:
    for layer in model.layers:
        if isinstance(layer, Linear | Conv2d):
            layer.weight.data = rng.normal(size=layer.weight.shape) * scale
            if layer.bias is not None:
                layer.bias.data = rng.normal(size=layer.bias.shape) * scale
    return model.eval()


def deep_s_shape_net(rng: np.random.Generator, activation: type, inputs: int,
                     widths: list[int], scale: float) -> Sequential:
    """Dense layers of ``widths`` each followed by ``activation``, then 3 outputs."""
    layers: list = []
    previous = inputs
    for width in widths:
        layers += [Linear(previous, width, dtype=np.float64), activation()]
        previous = width
    return randomise(Sequential(*layers, Linear(previous, 3, dtype=np.float64)), rng, scale)


@st.composite
def networks(draw: st.DrawFn) -> tuple[Sequential, tuple[int, ...]]:
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([0.5, 1.0, 2.5]))
    if draw(st.booleans()):  # fully connected with S-shapes
        sizes = [draw(st.integers(2, 4))] + [draw(st.integers(2, 6)) for _ in range(2)]
        acts = [draw(st.sampled_from(sorted(ACTIVATIONS))) for _ in range(2)]
        layers = []
        for n_in, n_out, act in zip(sizes, sizes[1:], acts, strict=False):
            layers += [Linear(n_in, n_out, dtype=np.float64), ACTIVATIONS[act]()]
        layers.append(Linear(sizes[-1], 3, dtype=np.float64))
        return randomise(Sequential(*layers), rng, scale), (sizes[0],)
    size = draw(st.integers(4, 6))
    channels = draw(st.integers(1, 2))
    kernel = draw(st.integers(2, 3))
    stride = draw(st.integers(1, kernel))
    padding = draw(st.integers(0, kernel // 2))
    act = draw(st.sampled_from(["none", *sorted(ACTIVATIONS)]))
    conv = Conv2d(1, channels, 2, 1, 0, dtype=np.float64)
    pool = MaxPool2d(kernel, stride, padding)
    shape = pool.output_shape(conv.output_shape((1, size, size)))
    layers = [conv] + ([] if act == "none" else [ACTIVATIONS[act]()]) + \
        [pool, Flatten(), Linear(int(np.prod(shape)), 3, dtype=np.float64)]
    if draw(st.booleans()):
        layers += [Tanh(), Linear(3, 3, dtype=np.float64)]
    return randomise(Sequential(*layers), rng, scale), (1, size, size)


def activation_inputs(model: Sequential, x: np.ndarray) -> dict[int, np.ndarray]:
    seen = {}
    with no_grad():
        out = Tensor(x)
        for index, layer in enumerate(model.layers):
            if isinstance(layer, ReLU | Sigmoid | Tanh | MaxPool2d):
                seen[index] = out.data
            out = layer(out)
    return seen


@settings(max_examples=max(40, settings.default.max_examples), deadline=None)
@given(networks(), st.integers(0, 2**31 - 1), st.sampled_from([0.05, 0.5, 2.0]),
       st.booleans())
def test_every_method_is_sound_on_pooling_and_s_shapes(problem, seed, eps, with_spec) -> None:
    model, shape = problem
    rng = np.random.default_rng(seed)
    batch = 2
    centre = rng.normal(size=(batch, *shape))
    lower, upper = centre - eps * rng.random((batch, *shape)), centre + eps
    spec = rng.normal(size=(batch, 2, 3)) if with_spec else None
    points = region_samples(lower, upper, 48, rng)                  # (B, N, *shape)
    flat = points.reshape(-1, *shape)
    with no_grad():
        outputs = model(Tensor(flat)).data.reshape(batch, -1, 3)
    values = outputs if spec is None else np.einsum("bkc,bnc->bnk", spec, outputs)
    inputs = activation_inputs(model, flat)
    for method in METHODS:
        result = compute_bounds(model, Box(Tensor(lower), Tensor(upper)), method=method,
                                spec=spec)
        what = f"{method} on {[type(a).__name__ for a in model.layers]}"
        assert_below(result.lower.numpy()[:, None], values, what)
        assert_above(result.upper.numpy()[:, None], values, what)
        for index, (low, high) in (result.intermediate or {}).items():
            seen = inputs[index].reshape(batch, -1, *low.shape[1:])
            assert_below(low.numpy()[:, None], seen, f"{what}: input of layer {index}")
            assert_above(high.numpy()[:, None], seen, f"{what}: input of layer {index}")


@pytest.mark.parametrize("step_type, function", [(SigmoidStep, lambda v: 1 / (1 + np.exp(-v))),
                                                 (TanhStep, np.tanh)])
def test_s_shape_lines_hold_densely_in_every_case(step_type, function) -> None:
    rng = np.random.default_rng(0)
    ends = np.sort(rng.normal(scale=4.0, size=(2, 400)), axis=0)
    lower = np.concatenate([ends[0], [-3.0, 0.5, -2.0, 1.0, -30.0, 0.0]])
    upper = np.concatenate([ends[1], [-1.0, 2.0, 2.5, 1.0, 30.0, 0.0]])   # incl. points
    step = step_type(0, (lower.size,))
    lines = step.relax(Tensor(lower[None, None]), Tensor(upper[None, None]))
    lam, t_l = lines.lower_slope.data[0, 0], lines.lower_intercept.data[0, 0]
    s, t = lines.upper_slope.data[0, 0], lines.upper_intercept.data[0, 0]
    v = lower + (upper - lower) * np.linspace(0, 1, 201)[:, None]
    y = function(v)
    assert np.all(lam * v + t_l <= y + 1e-12), "lower line above the function"
    assert np.all(y <= s * v + t + 1e-12), "upper line below the function"
    assert not np.any(lines.unstable)
    low, high = step.interval(Tensor(lower), Tensor(upper))
    np.testing.assert_allclose(low.data, function(lower), rtol=1e-12)
    np.testing.assert_allclose(high.data, function(upper), rtol=1e-12)


def test_max_pool_relaxation_is_exact_on_decided_windows() -> None:
    """A window whose j* beats every other input everywhere: DeepPoly bounds are exact."""
    model = Sequential(MaxPool2d(2), Flatten()).eval()
    lower = np.zeros((1, 1, 2, 4))
    lower[0, 0, 0, 0], lower[0, 0, 1, 3] = 5.0, 7.0
    upper = lower + 1.0
    result = compute_bounds(model, Box(Tensor(lower), Tensor(upper)), method="deeppoly")
    np.testing.assert_allclose(result.lower.numpy(), [[5.0, 7.0]])
    np.testing.assert_allclose(result.upper.numpy(), [[6.0, 8.0]])


def test_max_pool_back_substitution_is_the_adjoint_and_differentiable() -> None:
    """<A, placed rows> against a direct evaluation: the bound of a linear function of the
    outputs on a decided box equals the function at the winners; gradients flow."""
    rng = np.random.default_rng(3)
    model = Sequential(MaxPool2d(3, 2, 1), Flatten(), Linear(8, 2, dtype=np.float64)).eval()
    model.layers[2].weight.data = rng.normal(size=(2, 8))
    x = rng.normal(size=(1, 2, 4, 4))
    lower = Tensor(x, requires_grad=True)
    result = compute_bounds(model, Box(lower, lower + 0.0), method="deeppoly")
    with no_grad():
        exact = model(Tensor(x)).data
    np.testing.assert_allclose(result.lower.numpy(), exact, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.upper.numpy(), exact, rtol=1e-12, atol=1e-12)
    result.upper.sum().backward()
    assert lower.grad is not None and np.any(lower.grad != 0)


@pytest.mark.parametrize("step_type, function, derivative", [
    (SigmoidStep, lambda v: 1 / (1 + np.exp(-v)),
     lambda v: np.exp(-np.abs(v)) / (1 + np.exp(-np.abs(v))) ** 2),
    (TanhStep, np.tanh, lambda v: 1 - np.tanh(v) ** 2)])
def test_mixed_box_lines_are_tangents_at_the_midpoint_or_through_the_far_end(
        step_type, function, derivative) -> None:
    # CROWN's rule (module doc of nobound.bounds.activations): on l < 0 < u the upper line
    # is the tangent at max(d_u, m), the lower at min(d_l, m); d_u, d_l solved here
    # independently with brentq. The tangent through the far end alone is sound but loose
    # near the other end (on a 6-layer Sigmoid net of VNN-COMP's eran it gave −126 where
    # this rule gives +10).
    from scipy.optimize import brentq

    rng = np.random.default_rng(2)
    lower = -rng.uniform(0.05, 8.0, 300)
    upper = rng.uniform(0.05, 8.0, 300)
    lines = step_type(0, (300,)).relax(Tensor(lower[None, None]), Tensor(upper[None, None]))
    slopes = {"upper": lines.upper_slope.data[0, 0], "lower": lines.lower_slope.data[0, 0]}
    intercepts = {"upper": lines.upper_intercept.data[0, 0],
                  "lower": lines.lower_intercept.data[0, 0]}

    def miss(d: float, end: float) -> float:   # tangent at d, at ``end``, minus f there
        return function(d) + derivative(d) * (end - d) - function(end)

    checked = {"upper": 0, "lower": 0}
    for i, (l, u) in enumerate(zip(lower, upper, strict=True)):  # noqa: E741
        middle = (l + u) / 2
        for side, near, far, end in (("upper", 0.0, u, l), ("lower", 0.0, l, u)):
            if np.sign(miss(far, end)) != (1 if side == "upper" else -1):
                continue  # no tangent through the far end: the chord (checked densely above)
            point = brentq(miss, near, far, args=(end,), xtol=1e-13)
            d = max(point, middle) if side == "upper" else min(point, middle)
            np.testing.assert_allclose(slopes[side][i], derivative(d), rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(intercepts[side][i], function(d) - derivative(d) * d,
                                       rtol=1e-6, atol=1e-9)
            checked[side] += 1
    assert min(checked.values()) > 100


@pytest.mark.parametrize("activation", [Sigmoid, Tanh])
def test_deeppoly_s_shape_inputs_lie_within_the_interval_bounds(activation) -> None:
    # Through several S-shaped layers back-substitution alone can be looser than the
    # interval on some neurons; DeepPoly keeps both (their intersection), so its bounds of
    # every S-shape input lie inside IBP's (soundness: the sampled tests above).
    rng = np.random.default_rng(3)
    model = deep_s_shape_net(rng, activation, 6, [12] * 5, 1.5)
    center = rng.normal(size=(2, 6))
    box = Box(Tensor(center - 0.8), Tensor(center + 0.8))
    with no_grad():
        deeppoly = compute_bounds(model, box, method="deeppoly").intermediate
        ibp = compute_bounds(model, box, method="ibp").intermediate
    tighter_somewhere = False
    for index, (low, high) in deeppoly.items():
        ibp_low, ibp_high = (np.asarray(v.data).reshape(np.asarray(low.data).shape)
                             for v in ibp[index])
        # (IBP from its own, wider bounds rounds differently: equal to 1e-9)
        assert np.all(low.data >= ibp_low - 1e-9) and np.all(high.data <= ibp_high + 1e-9), index
        tighter_somewhere |= bool(np.any(low.data > ibp_low + 1e-6)
                                  or np.any(high.data < ibp_high - 1e-6))
    assert tighter_somewhere


@settings(max_examples=max(30, settings.default.max_examples), deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([Sigmoid, Tanh]),
       st.sampled_from([0.1, 0.6, 2.0]))
def test_alpha_crown_s_shape_tangent_points_are_sound_for_any_theta(seed, activation,
                                                                   eps) -> None:
    # alpha-CROWN moves each tangent point within its range (d = start + θ (stop − start));
    # any θ ∈ [0, 1] per row, side and line must give true bounds — checked with random θ
    # at the box's vertices and inside, and θ of DeepPoly's points must give DeepPoly's bound.
    from nobound.bounds.alpha_slopes import (
        initial_slopes,
        initial_tangents,
        tangent_ranges,
        with_slopes,
    )
    from nobound.bounds.deeppoly import deeppoly_relaxations, output_bounds
    from nobound.bounds.network import Network
    from nobound.bounds.plan import BoundsPlan

    rng = np.random.default_rng(seed)
    model = randomise(Sequential(Linear(3, 5, dtype=np.float64), activation(),
                                 Linear(5, 4, dtype=np.float64), activation(),
                                 Linear(4, 3, dtype=np.float64)), rng, 1.5)
    center = rng.normal(size=(2, 3))
    box = Box(Tensor(center - eps), Tensor(center + eps))
    spec = Tensor(rng.normal(size=(2, 2, 3)))
    network, plan = Network.from_model(model, (3,)), BoundsPlan()
    with no_grad():
        relaxations, recorded = deeppoly_relaxations(network, box, None, None, plan)
        ranges = tangent_ranges(network, relaxations, recorded)
        assert ranges, "the S-shaped layers have movable tangent points"
        slopes = initial_slopes(relaxations, 2, "deeppoly")
        initial_tangents(ranges, 2, "deeppoly", slopes)
        at_deeppoly, _ = output_bounds(network, box, spec,
                                       with_slopes(relaxations, slopes, True, network, ranges),
                                       plan)
        plain = compute_bounds(model, box, method="deeppoly", spec=spec)
        np.testing.assert_allclose(at_deeppoly["lower"].data[0], plain.lower.data, rtol=1e-9,
                                   atol=1e-9)
        np.testing.assert_allclose(at_deeppoly["upper"].data[0], plain.upper.data, rtol=1e-9,
                                   atol=1e-9)
        points = region_samples(box.lower.data, box.upper.data, 200, rng)  # vertices too
        outputs = model(Tensor(points.reshape(-1, 3))).data.reshape(2, -1, 3)
        values = np.einsum("brk,bsk->bsr", spec.data, outputs)   # (B, samples, rows)
        for _ in range(5):
            for side in slopes:
                for key, theta in slopes[side].items():
                    slopes[side][key] = Tensor(rng.uniform(size=theta.shape))
            bounds, _ = output_bounds(network, box, spec,
                                      with_slopes(relaxations, slopes, True, network, ranges),
                                      plan)
            assert_below(bounds["lower"].data[0][:, None], values, "random θ, lower")
            assert_above(bounds["upper"].data[0][:, None], values, "random θ, upper")


def test_alpha_crown_optimises_s_shape_tangents_beyond_deeppoly() -> None:
    # never looser than DeepPoly (it starts there and keeps the best), strictly tighter
    # somewhere on a deep Sigmoid net whose neurons straddle 0
    rng = np.random.default_rng(5)
    model = deep_s_shape_net(rng, Sigmoid, 4, [8] * 3, 2.0)
    center = rng.normal(size=(3, 4))
    box = Box(Tensor(center - 0.4), Tensor(center + 0.4))
    with no_grad():
        deeppoly = compute_bounds(model, box, method="deeppoly")
        alpha = compute_bounds(model, box, method="alpha-crown", alpha_steps=20)
    assert np.all(alpha.lower.data >= deeppoly.lower.data - 1e-12)
    assert np.all(alpha.upper.data <= deeppoly.upper.data + 1e-12)
    gained = (alpha.lower.data - deeppoly.lower.data) + (deeppoly.upper.data - alpha.upper.data)
    assert gained.max() > 1e-3
