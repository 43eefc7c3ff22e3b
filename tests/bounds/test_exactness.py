"""Where a relaxation loses nothing, its bounds equal the exact optimum.

* A linear function a·x + k over a box l ≤ x ≤ u has the exact range
  a·(l + u)/2 ∓ |a|·(u − l)/2 + k (attained at vertices).
* One affine layer: IBP's eq. (3) is that range, coordinate by coordinate; so is every
  other method's bound.
* A network without ReLUs: DeepPoly/CROWN, CROWN-IBP, alpha-CROWN and HBox propagate
  affine maps exactly, so their bounds are the exact range of the composed map.
* No unstable ReLU (according to the method's own pre-activation bounds): every point of
  the region has the same activation pattern, the network is one affine map there, and
  DeepPoly/CROWN, CROWN-IBP, alpha-CROWN and HBox are again exact. (IBP is not: it loses
  the correlations between neurons even through stable ReLUs.)
"""

from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from nobound.autodiff.tensor import Tensor
from nobound.bounds import METHODS, Box, compute_bounds
from nobound.exact import dense_network
from nobound.nn import BatchNorm, Conv2d, Flatten, Linear, Normalize, ReLU, Sequential
from nobound.testing.strategies import bound_problems, networks, randomise

EXACT_AFFINE_METHODS = ("hbox", "crown-ibp", "deeppoly", "alpha-crown")
ROUNDOFF = 1e-10


def exact_range(slope: np.ndarray, offset: np.ndarray, lower: np.ndarray,
                upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min/max of slope @ x + offset over the box, per row: slope (K, n), offset (K,)."""
    centre, radius = (lower + upper) / 2, (upper - lower) / 2
    middle = slope @ centre + offset
    spread = np.abs(slope) @ radius
    return middle - spread, middle + spread


def assert_equal_to_roundoff(bound: np.ndarray, exact: np.ndarray, scale: np.ndarray,
                             what: str) -> None:
    error = np.abs(bound - exact)
    allowed = ROUNDOFF * (1.0 + scale)
    assert np.all(error <= allowed), f"{what}: bound {bound} ≠ exact {exact} " \
                                     f"(error {error.max():.3e})"


def check_exact(result, slopes: np.ndarray, offsets: np.ndarray, lower: np.ndarray,
                upper: np.ndarray, what: str, elements: range | None = None) -> None:
    """result (B, K) against the exact range of slopes (B, K, n) · x + offsets (B, K)."""
    for b in elements if elements is not None else range(len(slopes)):
        low, high = exact_range(slopes[b], offsets[b], lower[b].reshape(-1),
                                upper[b].reshape(-1))
        scale = np.abs(slopes[b]) @ np.maximum(np.abs(lower[b]), np.abs(upper[b])).reshape(-1) \
            + np.abs(offsets[b])
        assert_equal_to_roundoff(result.lower.numpy()[b], low, scale, f"{what} lower, element {b}")
        assert_equal_to_roundoff(result.upper.numpy()[b], high, scale, f"{what} upper, element {b}")


def spec_of(problem) -> np.ndarray:
    return np.asarray(problem.spec_matrix)


def single_affine_layers() -> st.SearchStrategy:
    """One Linear, Conv2d, BatchNorm (eval) or Normalize layer with random parameters."""
    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(["linear", "conv", "batchnorm", "normalize"]))
        channels, side = draw(st.integers(1, 2)), draw(st.integers(2, 4))
        seed = draw(st.integers(0, 2**32 - 1))
        if kind == "linear":
            features = draw(st.integers(1, 6))
            layers, shape = [Linear(features, draw(st.integers(1, 4)), dtype=np.float64)], \
                (features,)
        elif kind == "conv":
            layers = [Conv2d(channels, draw(st.integers(1, 3)), draw(st.integers(1, 2)),
                             stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, 1)),
                             dtype=np.float64)]
            shape = (channels, side, side)
        elif kind == "batchnorm":
            layers, shape = [BatchNorm(channels, spatial=True, dtype=np.float64)], \
                (channels, side, side)
        else:
            rng = np.random.default_rng(seed)
            layers = [Normalize(rng.uniform(0, 1, channels), rng.uniform(0.2, 1, channels),
                                dtype=np.float64)]
            shape = (channels, side, side)
        model = Sequential(*layers)
        randomise(model, seed, 2.0, 1.0)
        return model, shape
    return build()


@settings(max_examples=100)
@given(layer=single_affine_layers(), seed=st.integers(0, 2**32 - 1),
       method=st.sampled_from(METHODS))
def test_one_affine_layer_is_bounded_by_eq3_exactly(layer, seed, method):
    """IBP on one affine layer is eq. (3), the exact range; so is every other method."""
    model, shape = layer
    rng = np.random.default_rng(seed)
    lower = rng.uniform(-1, 1, (2, *shape))
    upper = lower + rng.uniform(0, 1, lower.shape) * rng.integers(0, 2, lower.shape)
    result = compute_bounds(model, Box(Tensor(lower), Tensor(upper)), method=method)
    dense = dense_network(model, shape)
    weight, bias = dense.weights[0], dense.biases[0]
    slopes = np.broadcast_to(weight, (2, *weight.shape))
    offsets = np.broadcast_to(bias, (2, *bias.shape))
    check_exact(result, slopes, offsets, lower, upper, f"{method} on {model.layers[0]!r}")


@settings(max_examples=50)
@given(seed=st.integers(0, 2**32 - 1), features=st.integers(1, 5),
       method=st.sampled_from(METHODS))
def test_a_spec_folded_into_the_last_linear_layer_is_exact(seed, features, method):
    """Bounds on C (W x + b) over a box are the exact range of (C W) x + C b."""
    rng = np.random.default_rng(seed)
    layer = Linear(features, 3, dtype=np.float64)
    model = Sequential(layer)
    randomise(model, seed, 2.0, 1.0)
    spec = rng.normal(size=(2, 4, 3))
    lower = rng.uniform(-1, 1, (2, features))
    upper = lower + rng.uniform(0, 1, lower.shape)
    result = compute_bounds(model, Box(Tensor(lower), Tensor(upper)), method=method,
                            spec=spec)
    slopes = spec @ layer.weight.numpy()
    offsets = spec @ layer.bias.numpy()
    check_exact(result, slopes, offsets, lower, upper, method)


def without_relus(model: Sequential) -> Sequential:
    return Sequential(*[layer for layer in model.layers if not isinstance(layer, ReLU)])


@settings(max_examples=100)
@given(problem=bound_problems(network_strategy=networks()),
       method=st.sampled_from(EXACT_AFFINE_METHODS))
def test_networks_without_relus_are_bounded_exactly(problem, method):
    linear_model = without_relus(problem.network.model)
    problem.network.model = linear_model
    result = compute_bounds(linear_model, Box(Tensor(problem.lower), Tensor(problem.upper)),
                            method=method, spec=problem.spec)
    dense = dense_network(linear_model, problem.network.input_shape)
    spec = spec_of(problem)
    slopes = spec @ dense.weights[0]
    offsets = spec @ dense.biases[0]
    check_exact(result, slopes, offsets, problem.lower, problem.upper, method)


def local_affine_map(dense, patterns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """f = A x + a where every hidden neuron k is ReLU-active iff patterns[k] is True."""
    slope, offset = np.eye(dense.input_size), np.zeros(dense.input_size)
    for k, (weight, bias) in enumerate(zip(dense.weights, dense.biases, strict=True)):
        slope, offset = weight @ slope, weight @ offset + bias
        if k < dense.num_hidden_layers:
            slope, offset = patterns[k][:, None] * slope, patterns[k] * offset
    return slope, offset


@settings(max_examples=150)
@given(problem=bound_problems(radii=[0.0, 1e-4, 1e-3, 1e-2]),
       method=st.sampled_from(EXACT_AFFINE_METHODS))
def test_without_unstable_relus_bounds_are_exact(problem, method):
    model = problem.network.model
    region = Box(Tensor(problem.lower), Tensor(problem.upper))
    result = compute_bounds(model, region, method=method, spec=problem.spec)
    dense = dense_network(model, problem.network.input_shape)
    spec = spec_of(problem)
    checked = 0
    for b in range(len(problem.lower)):
        bounds = [(result.intermediate[index][0].numpy()[b].reshape(-1),
                   result.intermediate[index][1].numpy()[b].reshape(-1))
                  for index in dense.relu_layers]
        if any(np.any((low < 0) & (high > 0)) for low, high in bounds):
            continue  # an unstable neuron: the relaxation is allowed to lose precision
        slope, offset = local_affine_map(dense, [low >= 0 for low, _ in bounds])
        slopes = np.zeros((len(spec), *spec[b].shape[:1], slope.shape[1]))
        offsets = np.zeros((len(spec), len(spec[b])))
        slopes[b], offsets[b] = spec[b] @ slope, spec[b] @ offset
        check_exact(result, slopes, offsets, problem.lower, problem.upper, method,
                    elements=range(b, b + 1))
        checked += 1
    event(f"{checked} of {len(problem.lower)} elements without unstable ReLUs")


def test_a_hand_computed_two_neuron_network():
    """f(x) = ReLU(x₁ + x₂) − ReLU(x₁ − x₂) on [1, 2] × [0, ½]: both neurons active,
    f = 2 x₂ exactly, so every method except IBP gives [0, 1]; IBP gives [−1, 2]."""
    first = Linear(2, 2, dtype=np.float64)
    first.weight.data[...] = [[1.0, 1.0], [1.0, -1.0]]
    first.bias.data[...] = 0.0
    second = Linear(2, 1, dtype=np.float64)
    second.weight.data[...] = [[1.0, -1.0]]
    second.bias.data[...] = 0.0
    model = Sequential(Flatten(), first, ReLU(), second)
    region = Box(Tensor(np.array([[[[1.0, 0.0]]]])), Tensor(np.array([[[[2.0, 0.5]]]])))
    for method in METHODS:
        result = compute_bounds(model, region, method=method)
        expected = ([-1.0], [2.0]) if method == "ibp" else ([0.0], [1.0])
        np.testing.assert_allclose(result.lower.numpy()[0], expected[0], atol=1e-15)
        np.testing.assert_allclose(result.upper.numpy()[0], expected[1], atol=1e-15)
