"""Hypothesis strategies: random small networks, input regions and specifications.

Use them to property-test a relaxation (yours or nobound's) against the network it bounds:

    @given(problem=bound_problems(), seed=st.integers(0, 2**32 - 1))
    def test_my_relaxation_is_sound(problem, seed):
        lower, upper = my_bounds(problem.network.model, problem.lower, problem.upper,
                                 problem.spec)                           # each (B, K)
        rng = np.random.default_rng(seed)
        points = region_samples(problem.lower, problem.upper, 16, rng)   # (B, N, C, H, W)
        values = problem.spec_values(points)                             # (B, N, K)
        assert_below(lower[:, None], values, "my relaxation")
        assert_above(upper[:, None], values, "my relaxation")

(``region_samples`` from :mod:`nobound.testing.sampling`, ``assert_below``/``assert_above``
from :mod:`nobound.testing.soundness`.)

Hypothesis draws the *structure* (layer kinds, widths, kernels, batch norm, input
normalisation, weight scale, radius) so failures shrink to small, readable networks; the
weights themselves come from a NumPy generator seeded by a drawn integer, which keeps
generation fast and every example reproducible. Everything is float64 and the BatchNorm
layers are in eval mode with random (also negative) scales and random running statistics.
The weight scale is drawn over a wide range, so the examples mix stable and unstable
ReLUs, and the radius includes 0 (a single point) and regions clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.nn.layers import Conv2d, Linear
from nobound.nn.normalization import BatchNorm
from nobound.nn.sequential import Sequential
from nobound.nn.zoo import TABLE9, conv_net, fc_net


@dataclass
class RandomNetwork:
    """A float64 network in eval mode and the shape of one input (C, H, W)."""

    model: Sequential
    input_shape: tuple[int, int, int]
    num_classes: int
    description: str = field(default="")

    def __repr__(self) -> str:
        return f"RandomNetwork({self.description}, input {self.input_shape})\n{self.model!r}"


def randomise(model: Sequential, seed: int, weight_scale: float, bias_scale: float) -> None:
    """Fill every parameter and BatchNorm statistic from a generator seeded by ``seed``.

    Weights: U(−s, s)·weight_scale with s = 1/√fan_in (PyTorch's default scale), so
    weight_scale ≈ 1 gives unit-order pre-activations; biases U(−1, 1)·bias_scale.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, Linear | Conv2d):
            fan_in = int(np.prod(layer.weight.shape[1:]))
            bound = weight_scale / np.sqrt(fan_in)
            layer.weight.data[...] = rng.uniform(-bound, bound, layer.weight.shape)
            if layer.bias is not None:
                layer.bias.data[...] = rng.uniform(-bias_scale, bias_scale, layer.bias.shape)
        elif isinstance(layer, BatchNorm):
            n = layer.num_features
            layer.weight.data[...] = rng.uniform(-1.5, 1.5, n)
            layer.bias.data[...] = rng.normal(0.0, 0.5, n)
            layer.running_mean = rng.normal(0.0, 0.5, n)
            layer.running_var = rng.uniform(0.2, 2.0, n)
    model.eval()


@st.composite
def normalisations(draw: st.DrawFn, channels: int) -> tuple[list[float], list[float]] | None:
    """None, or per-channel (mean, std) of a Normalize input layer."""
    if not draw(st.booleans()):
        return None
    mean = draw(st.lists(st.floats(0.0, 1.0), min_size=channels, max_size=channels))
    std = draw(st.lists(st.floats(0.2, 1.0), min_size=channels, max_size=channels))
    return mean, std


def _finish(draw: st.DrawFn, model: Sequential, input_shape: tuple[int, int, int],
            num_classes: int, description: str) -> RandomNetwork:
    seed = draw(st.integers(0, 2**32 - 1))
    weight_scale = draw(st.sampled_from([0.5, 1.0, 2.0, 4.0]))
    bias_scale = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    randomise(model, seed, weight_scale, bias_scale)
    return RandomNetwork(model, input_shape, num_classes,
                         f"{description}, seed {seed}, weight scale {weight_scale}, "
                         f"bias scale {bias_scale}")


@st.composite
def fc_networks(draw: st.DrawFn, max_inputs: int = 6, max_hidden_layers: int = 3,
                max_width: int = 6, max_classes: int = 4) -> RandomNetwork:
    """Flatten → (Linear → [BatchNorm] → ReLU)* → Linear, on inputs (1, 1, n)."""
    inputs = draw(st.integers(1, max_inputs))
    hidden = draw(st.lists(st.integers(1, max_width), max_size=max_hidden_layers))
    classes = draw(st.integers(2, max_classes))
    batchnorm = draw(st.booleans()) if hidden else False
    input_shape = (1, 1, inputs)
    normalize = draw(normalisations(1))
    model = fc_net(input_shape, classes, hidden, normalize=normalize, dtype=np.float64)
    if batchnorm:
        layers = []
        for layer in model.layers:
            layers.append(layer)
            if isinstance(layer, Linear) and layer is not model.layers[-1]:
                layers.append(BatchNorm(layer.out_features, spatial=False, dtype=np.float64))
        model = Sequential(*layers)
    return _finish(draw, model, input_shape, classes,
                   f"fc {inputs}-{hidden}-{classes}{' bn' if batchnorm else ''}"
                   f"{' normalize' if normalize else ''}")


@st.composite
def conv_networks(draw: st.DrawFn, max_size: int = 5, max_channels: int = 2,
                  max_convs: int = 2, max_hidden: int = 4,
                  max_classes: int = 3) -> RandomNetwork:
    """(Conv2d → [BatchNorm] → ReLU)+ → Flatten → (Linear → [BN] → ReLU)? → Linear."""
    channels = draw(st.integers(1, max_channels))
    height, width = draw(st.integers(2, max_size)), draw(st.integers(2, max_size))
    convs, size = [], (height, width)
    for _ in range(draw(st.integers(1, max_convs))):
        kernel = draw(st.integers(1, min(3, *size)))
        stride = draw(st.integers(1, 2))
        padding = draw(st.integers(0, 1))
        out_channels = draw(st.integers(1, 3))
        convs.append((out_channels, kernel, stride, padding))
        size = tuple((n + 2 * padding - kernel) // stride + 1 for n in size)
        if min(size) < 2:
            break
    hidden = draw(st.lists(st.integers(1, max_hidden), max_size=1))
    classes = draw(st.integers(2, max_classes))
    batchnorm = draw(st.booleans())
    normalize = draw(normalisations(channels))
    input_shape = (channels, height, width)
    model = conv_net(input_shape, classes, convs, hidden, batchnorm=batchnorm,
                     normalize=normalize, dtype=np.float64)
    return _finish(draw, model, input_shape, classes,
                   f"conv {convs} hidden {hidden}{' bn' if batchnorm else ''}"
                   f"{' normalize' if normalize else ''}")


@st.composite
def zoo_networks(draw: st.DrawFn) -> RandomNetwork:
    """The paper's CNN3-tiny (Table 9) on small inputs, and a CNN7-like net with BatchNorm.

    The shapes of the zoo scaled down: full-size inputs would make each example too slow
    for thousands of examples, and the relaxation code paths are the same.
    """
    name = draw(st.sampled_from(["cnn3_tiny", "cnn7_small"]))
    side = draw(st.integers(4, 7))
    input_shape = (1, side, side)
    classes = draw(st.integers(2, 4))
    normalize = draw(normalisations(1))
    if name == "cnn3_tiny":
        model = conv_net(input_shape, classes, *TABLE9["cnn3_tiny"], normalize=normalize,
                         dtype=np.float64)
    else:
        model = conv_net(input_shape, classes, [(2, 3, 1, 1), (2, 3, 2, 1)], [4],
                         batchnorm=True, normalize=normalize, dtype=np.float64)
    return _finish(draw, model, input_shape, classes, f"{name}"
                   f"{' normalize' if normalize else ''}")


def networks() -> st.SearchStrategy[RandomNetwork]:
    """Any of the small FC, conv and zoo-shaped networks."""
    return st.one_of(fc_networks(), conv_networks(), zoo_networks())


@dataclass
class BoundProblem:
    """A network, a batch of boxes lower ≤ x ≤ upper (B, C, H, W) and a spec (B, K, classes).

    ``centre`` and ``eps`` describe the boxes as l∞ balls; ``clip`` says whether they were
    intersected with [0, 1]. ``spec`` is None for bounds on the logits themselves, or
    (K, classes) when one specification is shared by the batch.
    """

    network: RandomNetwork
    centre: np.ndarray
    eps: np.ndarray
    clip: bool
    lower: np.ndarray
    upper: np.ndarray
    spec: np.ndarray | None

    @property
    def spec_matrix(self) -> np.ndarray:
        """The spec as (B, K, classes), the identity when ``spec`` is None."""
        matrix = np.eye(self.network.num_classes) if self.spec is None else self.spec
        if matrix.ndim == 2:
            matrix = np.broadcast_to(matrix, (len(self.centre), *matrix.shape))
        return matrix

    def spec_values(self, points: np.ndarray) -> np.ndarray:
        """C f(x) for points (B, N, C, H, W) of each batch element's region: (B, N, K)."""
        batch, count = points.shape[:2]
        with no_grad():
            logits = self.network.model(Tensor(points.reshape(batch * count,
                                                              *points.shape[2:]))).data
        logits = np.asarray(logits).reshape(batch, count, -1)
        return np.einsum("bkc,bnc->bnk", self.spec_matrix, logits)


def _box(centre: np.ndarray, eps: np.ndarray, clip: bool) -> tuple[np.ndarray, np.ndarray]:
    radius = eps.reshape((-1,) + (1,) * (centre.ndim - 1))
    lower, upper = centre - radius, centre + radius
    if clip:
        lower, upper = np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)
    return lower, upper


@st.composite
def specifications(draw: st.DrawFn, batch: int, num_classes: int, seed: int,
                   ) -> np.ndarray | None:
    """None (the logits), margin rows e_t − e_j, a random Gaussian C (B, K, classes), or
    one random C (K, classes) shared by the batch."""
    kind = draw(st.sampled_from(["logits", "margin", "random", "shared"]))
    rng = np.random.default_rng(seed)
    if kind == "logits":
        return None
    if kind == "margin":
        targets = draw(st.lists(st.integers(0, num_classes - 1), min_size=batch,
                                max_size=batch))
        spec = np.zeros((batch, num_classes - 1, num_classes))
        for b, target in enumerate(targets):
            others = [j for j in range(num_classes) if j != target]
            spec[b, np.arange(num_classes - 1), target] = 1.0
            spec[b, np.arange(num_classes - 1), others] = -1.0
        return spec
    rows = draw(st.integers(1, 3))
    if kind == "shared":
        return rng.normal(size=(rows, num_classes))
    return rng.normal(size=(batch, rows, num_classes))


@st.composite
def bound_problems(draw: st.DrawFn, network_strategy: st.SearchStrategy[RandomNetwork]
                   | None = None, max_batch: int = 2,
                   radii: Sequence[float] | None = None) -> BoundProblem:
    """A random network with a batch of random l∞ regions and a specification.

    Centres are uniform in [0, 1]; each batch element draws its own radius from ``radii``
    (default: 0, and log-spaced values from 1e-3 to 1); with probability ½ the boxes are
    clipped to [0, 1] as :func:`nobound.bounds.linf_ball` does for images.
    """
    network = draw(network_strategy if network_strategy is not None else networks())
    batch = draw(st.integers(1, max_batch))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.0, 1.0, (batch, *network.input_shape))
    choices: Any = list(radii) if radii is not None else \
        [0.0, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0]
    eps = np.array(draw(st.lists(st.sampled_from(choices), min_size=batch, max_size=batch)))
    clip = draw(st.booleans())
    lower, upper = _box(centre, eps, clip)
    spec = draw(specifications(batch, network.num_classes, seed + 1))
    return BoundProblem(network, centre, eps, clip, lower, upper, spec)
