"""Interval bound propagation, IBP (§2.2; Mirman et al. 2018, Gowal et al. 2018).

Every node is described by a box l ≤ v ≤ u, kept as centre c = (l + u)/2 and radius
r = (u − l)/2. An affine layer y = W v + b maps it to

    c' = W c + b,     r' = |W| r,                                                   (3)

the exact interval hull of the image of the box (eq. 3 written with c and r). A ReLU is
monotone, so it maps [l, u] to [ReLU(l), ReLU(u)] (Fig. 2a); any activation step gives its
own image of [l, u] (``step.interval``). With a specification C folded
into the last Linear layer (see :mod:`nobound.bounds.specification`) the last step bounds
C · f directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nobound.autodiff.tensor import Tensor
from nobound.bounds.network import Network, Step
from nobound.bounds.regions import Box
from nobound.bounds.splits import refine_bounds


def with_population_axis(tensor: Tensor) -> Tensor:
    """(B, *x) → (1, B, *x): every internal tensor carries a population axis P'."""
    return tensor.reshape((1, *tensor.shape))


def propagate_affine(steps: Sequence[Step], center: Tensor, radius: Tensor
                     ) -> tuple[Tensor, Tensor]:
    """Eq. (3) through ReLU-free steps: exact for one dense map between diagonal ones."""
    for step in steps:
        if step.activation:
            raise ValueError(f"propagate_affine met an activation (layer {step.index})")
        center, radius = step.forward(center), step.forward_abs(radius)
    return center, radius


def interval_bounds(network: Network, box: Box, splits: Mapping[int, Any] | None = None,
                    intermediate: Mapping[int, Any] | None = None
                    ) -> tuple[Tensor, Tensor, dict[int, tuple[Tensor, Tensor]]]:
    """IBP bounds (P', B, *output) of the network output over ``box``.

    Returns (lower, upper, {ReLU index: (lower, upper) of its input}); the pre-activation
    bounds are refined by ``intermediate`` and ``splits`` before each ReLU is applied.
    """
    center = with_population_axis(box.center)
    radius = with_population_axis(box.radius)
    recorded: dict[int, tuple[Tensor, Tensor]] = {}
    for step in network.steps:
        if not step.activation:
            center, radius = step.forward(center), step.forward_abs(radius)
            continue
        lower, upper = refine_bounds(step.index, center - radius, center + radius,
                                     intermediate, splits)
        recorded[step.index] = (lower, upper)
        lower, upper = step.interval(lower, upper)
        center, radius = (upper + lower) * 0.5, (upper - lower) * 0.5
    return center - radius, center + radius, recorded


def interval_precheck(network: Network, end: int, box: Box,
                      recorded: Mapping[int, tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Eq. (3) for node ``end``, started from the bounds of the last ReLU before it (or from
    the box): sound, cheap, and tight enough to prove most stable neurons stable."""
    previous = [index for index in recorded if index <= end]
    if previous:
        start = max(previous)
        lower, upper = network.steps[start].interval(*recorded[start])
        c, r = (upper + lower) * 0.5, (upper - lower) * 0.5
    else:
        start = -1
        c, r = with_population_axis(box.center), with_population_axis(box.radius)
    c, r = propagate_affine(network.steps[start + 1:end + 1], c, r)
    return c - r, c + r
