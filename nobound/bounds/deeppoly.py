"""DeepPoly (Singh et al. 2019), mathematically identical to CROWN (Zhang et al. 2018).

Every node gets linear bounds in the input (eq. 4) by back-substitution
(:mod:`nobound.bounds.back_substitution`); every ReLU is relaxed by eq. (5) with the
area heuristic λ = 1[u > −l]. The concrete bounds [l, u] of each ReLU's input are
themselves DeepPoly bounds: going through the network layer by layer, the input of ReLU k
is bounded by a full back-substitution through all earlier (already relaxed) ReLUs — one
row per neuron, so the cost is quadratic in depth.

Four shortcuts keep the cost down without changing a relaxation:

* the input of a ReLU reached from the input box through ReLU-free layers with at most
  one dense map among them (the first layer) is bounded by eq. (3), which is exact there
  (a dense map applied to a box has exactly the interval hull of eq. 3, and per-channel
  maps and reshapes keep boxes boxes);
* only neurons that a cheap interval pre-check cannot prove stable get a back-substitution
  row (:mod:`nobound.bounds.unstable_rows`); the relaxation of a stable neuron is exact
  whatever its bounds, so the pre-check's bounds serve for the others;
* the rows of the output pass are the specification C itself, which is how C is folded
  into the last layer;
* the rows of a convolutional neuron are carried on its receptive field, a window of each
  earlier node, instead of whole maps (:mod:`nobound.bounds.patches`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import prod
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.back_substitution import BOTH_SIDES, SymbolicBounds, identity_rows
from nobound.bounds.chunking import bound_node, bound_rows
from nobound.bounds.ibp import propagate_affine, with_population_axis
from nobound.bounds.linear_bounds import LinearBounds
from nobound.bounds.network import Network, ReluStep
from nobound.bounds.regions import Box
from nobound.bounds.relu_relaxation import ReluRelaxation, deeppoly_relaxation, refine_bounds
from nobound.bounds.unstable_rows import bound_unstable_neurons

RelaxationRule = Callable[[Tensor, Tensor], ReluRelaxation]


def exact_by_intervals(network: Network, end: int) -> bool:
    """Whether eq. (3) is exact for node ``end``: no ReLU and ≤ 1 dense map before it."""
    steps = network.steps[:end + 1]
    return not any(isinstance(s, ReluStep) for s in steps) and \
        sum(s.dense for s in steps) <= 1


def interval_precheck(network: Network, end: int, box: Box,
                      recorded: Mapping[int, tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Sound interval bounds of node ``end`` (eq. 3), started from the bounds of the last
    ReLU before it (or from the input box) — cheap, and tight enough to prove most stable
    neurons stable."""
    previous = [index for index in recorded if index <= end]
    if previous:
        start = max(previous)
        lower, upper = recorded[start]
        lower, upper = ops.relu(lower), ops.relu(upper)
        center, radius = (upper + lower) * 0.5, (upper - lower) * 0.5
    else:
        start = -1
        center = with_population_axis(box.center)
        radius = with_population_axis(box.radius)
    center, radius = propagate_affine(network.steps[start + 1:end + 1], center, radius)
    return center - radius, center + radius


def node_bounds(network: Network, end: int, box: Box,
                relaxations: Mapping[int, ReluRelaxation], memory_budget_bytes: int,
                prior: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """DeepPoly bounds (P', B, *shape) of node ``end`` (−1: the input box).

    With ``prior`` (sound bounds of the node) only its unstable neurons are
    back-substituted; the others keep the prior bounds (see :mod:`unstable_rows`).
    """
    if exact_by_intervals(network, end):
        center = with_population_axis(box.center)
        radius = with_population_axis(box.radius)
        center, radius = propagate_affine(network.steps[:end + 1], center, radius)
        return center - radius, center + radius
    if prior is not None:
        return bound_unstable_neurons(network, end, box, relaxations, memory_budget_bytes,
                                      prior)
    return bound_node(network, end, box, relaxations, memory_budget_bytes)


def deeppoly_relaxations(network: Network, box: Box, splits: Mapping[int, Any] | None,
                         intermediate: Mapping[int, Any] | None, memory_budget_bytes: int,
                         rule: RelaxationRule = deeppoly_relaxation
                         ) -> tuple[dict[int, ReluRelaxation], dict[int, tuple[Tensor, Tensor]]]:
    """Bound and relax every ReLU in order: ({index: eq. 5}, {index: (l, u) of its input}).

    Each ReLU input is first bounded by the interval pre-check, refined by the known
    ``intermediate`` bounds and ``splits``; only neurons still unstable get DeepPoly rows.
    """
    relaxations: dict[int, ReluRelaxation] = {}
    recorded: dict[int, tuple[Tensor, Tensor]] = {}
    for step in network.steps:
        if not isinstance(step, ReluStep):
            continue
        end = step.index - 1
        prior = None
        if not exact_by_intervals(network, end):
            prior = refine_bounds(step.index, *interval_precheck(network, end, box, recorded),
                                  intermediate, splits)
        lower, upper = node_bounds(network, end, box, relaxations, memory_budget_bytes, prior)
        lower, upper = refine_bounds(step.index, lower, upper, intermediate, splits)
        recorded[step.index] = (lower, upper)
        relaxations[step.index] = rule(lower, upper)
    return relaxations, recorded


def output_bounds(network: Network, box: Box, spec: Tensor | None,
                  relaxations: Mapping[int, ReluRelaxation], memory_budget_bytes: int,
                  sides: tuple[str, ...] = BOTH_SIDES, keep_symbolic: bool = False
                  ) -> tuple[dict[str, Tensor], SymbolicBounds | None]:
    """Back-substitute the rows of C (or the identity over the outputs) to the input.

    Returns ({side: (P', B, R)}, symbolic bounds or None).
    """
    end = len(network.steps) - 1
    shape = network.output_shape
    like = box.lower
    if spec is None:
        def make_rows(start: int, stop: int) -> Tensor:
            return identity_rows(shape, start, stop, like)
        total = prod(shape)
    else:
        def make_rows(start: int, stop: int) -> Tensor:
            rows = spec[:, start:stop]
            return rows.reshape((1, 1, *rows.shape))
        total = spec.shape[1]
    return bound_rows(network, end, box, make_rows, total, sides, relaxations,
                      memory_budget_bytes, keep_symbolic)


def deeppoly_bounds(network: Network, box: Box, spec: Tensor | None = None,
                    splits: Mapping[int, Any] | None = None,
                    intermediate: Mapping[int, Any] | None = None,
                    memory_budget_bytes: int = 1 << 30, return_linear: bool = False,
                    ) -> tuple[Tensor, Tensor, dict[int, tuple[Tensor, Tensor]],
                               LinearBounds | None]:
    """DeepPoly/CROWN bounds (P', B, R) of C · f (or f) over ``box``."""
    relaxations, recorded = deeppoly_relaxations(network, box, splits, intermediate,
                                                 memory_budget_bytes)
    bounds, symbolic = output_bounds(network, box, spec, relaxations, memory_budget_bytes,
                                     keep_symbolic=return_linear)
    linear = symbolic.to_linear_bounds(box.batch_size, network.input_shape) \
        if symbolic is not None else None
    return bounds["lower"], bounds["upper"], recorded, linear
