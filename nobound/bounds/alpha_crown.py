"""alpha-CROWN (Xu et al. 2021): DeepPoly with optimised ReLU lower slopes.

Eq. (5) is sound for *any* lower slope λ ∈ [0, 1] of an unstable neuron: λ v ≤ ReLU(v) for
v ∈ [l, u] whenever 0 ≤ λ ≤ 1. The bound after back-substitution is a function of the
slopes, so alpha-CROWN treats them as variables α — one per unstable neuron, per output
row and per bound side — and maximises the lower bound (minimises the upper bound) by
projected gradient ascent:

    α ← clip(α + η · sign(∂ bound / ∂ α), 0, 1)       (sign steps, as PGD uses)

with the gradient from nobound's own autodiff. By default the intermediate bounds [l, u]
are DeepPoly's and stay fixed, and only the output pass is optimised (see "Intermediate
bounds" below for the option that tightens them). Because α is per row and
rows are independent, the best slopes seen for each row are kept, so with
``init="deeppoly"`` the result is never looser than DeepPoly.

Sigmoid and Tanh (Xu et al. 2021 optimise them too): the tangent at any point d of a range
is a sound line (:meth:`nobound.bounds.activations.SShapeStep.tangent_ranges` — a convex
box's lower line, a concave box's upper line, the tangents through the far end around 0),
so d = start + θ (stop − start) with θ ∈ [0, 1] per neuron, output row, side and line is
optimised by the same sign steps; DeepPoly's d is the start with ``init="deeppoly"``.

Intermediate bounds (``intermediate_steps`` > 0; Xu et al. 2021 optimise them too) are
tightened layer by layer before the output pass by the same search on the rows ±e_i of each
activation's input: :mod:`nobound.bounds.alpha_crown_intermediate`. The variables α and θ
and the sign steps that move them are :mod:`nobound.bounds.alpha_slopes`.

The paper's training variant (App. F.2) is ``init=0.5, steps=1, step_size=0.5``: every
unstable slope ends at 0 or 1 (0.5 where the bound does not depend on it), for about
twice the cost of DeepPoly.

Differentiability w.r.t. the parameters: the slope search runs on a detached copy of the
network; the final bound is recomputed with the chosen slopes held constant, so its
gradient is that of DeepPoly with those slopes (the search itself is not differentiated,
as α-CROWN is a non-differentiable relaxation: the paper trains it with PGPE).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from math import prod
from typing import Any

from nobound.autodiff.tensor import Tensor, is_grad_enabled
from nobound.bounds.alpha_crown_intermediate import TightenedLayer, tighten_intermediate
from nobound.bounds.alpha_slopes import (
    Slopes,
    initial_slopes,
    initial_tangents,
    row_lines,
    sign_ascent,
    tangent_ranges,
    with_slopes,
)
from nobound.bounds.deeppoly import DeepPoly, deeppoly_relaxations, output_bounds
from nobound.bounds.linear_bounds import BoundResult
from nobound.bounds.network import Network
from nobound.bounds.plan import BoundsPlan
from nobound.bounds.regions import Box
from nobound.bounds.specification import as_spec_tensor


def alpha_crown_bounds(network: Network, box: Box, spec: Tensor | None,
                       splits: Mapping[int, Any] | None, intermediate: Mapping[int, Any] | None,
                       plan: BoundsPlan, return_linear: bool, steps: int = 20,
                       step_size: float = 0.1, init: str | float = "deeppoly") -> BoundResult:
    """alpha-CROWN bounds (P', B, R) of C · f (or f) over ``box``: DeepPoly's intermediate
    bounds and driver, with λ of the output pass chosen per row by sign-gradient steps."""
    return optimised_bounds(network, box, spec, splits, intermediate, plan, return_linear,
                            steps, step_size, init).bounds


@dataclass
class OptimisedBounds:
    """:func:`optimised_bounds`' answer: the output ``bounds``, the layers whose input
    bounds were tightened before them, in order, and ``output_slopes`` — the lower side's
    per-row lines of every activation behind ``bounds.lower`` (as in
    :class:`TightenedLayer`)."""

    bounds: BoundResult
    tightened: list[TightenedLayer]
    output_slopes: dict[int, Any]


def optimised_bounds(network: Network, box: Box, spec: Tensor | None,
                     splits: Mapping[int, Any] | None, intermediate: Mapping[int, Any] | None,
                     plan: BoundsPlan, return_linear: bool, steps: int = 20,
                     step_size: float = 0.1, init: str | float = "deeppoly",
                     intermediate_steps: int = 0, intermediate_step_size: float = 0.1,
                     deadline: float = math.inf) -> OptimisedBounds:
    """alpha-CROWN: DeepPoly's intermediate bounds, tightened layer by layer with
    ``intermediate_steps`` sign steps per layer when > 0
    (:mod:`nobound.bounds.alpha_crown_intermediate`), then the output pass with ``steps``.
    ``deadline`` (a ``time.perf_counter`` reading) is shared evenly by the layers still to
    tighten and the output pass; each stops its steps at its share
    (every layer still gets its starting point's bound)."""
    if init != "deeppoly" and not 0.0 <= float(init) <= 1.0:
        raise ValueError(f"alpha init must be 'deeppoly' or a slope in [0, 1], got {init!r}")
    if min(steps, intermediate_steps) < 0 or min(step_size, intermediate_step_size) < 0:
        raise ValueError(f"alpha steps and step sizes must be ≥ 0, got {steps}, {step_size}, "
                         f"{intermediate_steps}, {intermediate_step_size}")
    differentiable = is_grad_enabled() and network.requires_grad
    relaxations, recorded = deeppoly_relaxations(network, box, splits, intermediate, plan)
    detached = (network.detached(), Box(Tensor(box.lower.data), Tensor(box.upper.data)))
    ranges = tangent_ranges(network, relaxations, recorded)
    tightened = []
    if intermediate_steps > 0:
        tightened = tighten_intermediate(network, detached, relaxations, recorded, ranges,
                                          plan, intermediate_steps, intermediate_step_size,
                                          deadline)
    rows = spec.shape[1] if spec is not None else prod(network.output_shape)
    detached_spec = None if spec is None else Tensor(spec.data)
    slopes = initial_slopes(relaxations, rows, init)
    initial_tangents(ranges, rows, init, slopes)

    def evaluate(current: Slopes) -> dict[str, Tensor]:
        bounds, _ = output_bounds(*detached, detached_spec,
                                  with_slopes(relaxations, current, True, network, ranges),
                                  plan)
        return bounds

    best, best_slopes, _ = sign_ascent(evaluate, slopes, steps, step_size, deadline)
    chosen = with_slopes(relaxations, best_slopes, True, network, ranges)
    output_slopes = row_lines(chosen, "lower")
    tangent_slopes = {index: (chosen[index].row_lines["lower"]["lower_slope"],
                              chosen[index].row_lines["lower"]["upper_slope"])
                      for index in ranges}
    if not differentiable and not return_linear:
        result = BoundResult(best["lower"], best["upper"], "alpha-crown", recorded,
                             tangent_slopes=tangent_slopes)
        return OptimisedBounds(result, tightened, output_slopes)
    final, linear = output_bounds(network, box, spec,
                                  with_slopes(relaxations, best_slopes, False, network,
                                               ranges), plan, keep_symbolic=return_linear)
    result = BoundResult(final["lower"], final["upper"], "alpha-crown", recorded, linear,
                         tangent_slopes)
    return OptimisedBounds(result, tightened, output_slopes)


def optimised_model_bounds(model: Any, region: Box, spec: Any = None, steps: int = 20,
                           step_size: float = 0.1, intermediate_steps: int = 20,
                           intermediate_step_size: float = 0.1, deadline: float = math.inf,
                           plan: BoundsPlan | None = None) -> OptimisedBounds:
    """:func:`optimised_bounds` of ``spec · model(x)`` over ``region``, reading the model
    and C as :func:`nobound.bounds.compute_bounds` does (no population parameters): the
    certifier's entry point, which needs the tightened layers as well as the bounds.
    Every array keeps the leading axis P' = 1."""
    plan = plan or BoundsPlan()
    network = Network.from_model(model, region.shape[1:], None, like=region.lower)
    spec_tensor = None if spec is None else as_spec_tensor(
        spec, region.batch_size, prod(network.output_shape), region.lower)
    return optimised_bounds(network, region, spec_tensor, None, None, plan, False, steps,
                            step_size, "deeppoly", intermediate_steps, intermediate_step_size,
                            deadline)


@dataclass(frozen=True)
class AlphaCrown(DeepPoly):
    """alpha-CROWN as a Relaxation: DeepPoly's [l, u] and driver, λ optimised per output row.
    Its gradient is DeepPoly's at the chosen slopes (the search is not differentiated), so
    it counts as non-differentiable: the paper trains it with PGPE."""

    name: str = "alpha-crown"
    differentiable: bool = False

    def bound(self, network: Network, box: Box, spec: Tensor | None, splits: Any,
              intermediate: Any, plan: BoundsPlan, return_linear: bool,
              options: dict[str, Any]) -> BoundResult:
        return alpha_crown_bounds(network, box, spec, splits, intermediate, plan,
                                  return_linear, steps=options["alpha_steps"],
                                  step_size=options["alpha_step_size"],
                                  init=options["alpha_init"])
