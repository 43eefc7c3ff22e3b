"""alpha-CROWN (Xu et al. 2021): DeepPoly with optimised ReLU lower slopes.

Eq. (5) is sound for *any* lower slope λ ∈ [0, 1] of an unstable neuron: λ v ≤ ReLU(v) for
v ∈ [l, u] whenever 0 ≤ λ ≤ 1. The bound after back-substitution is a function of the
slopes, so alpha-CROWN treats them as variables α — one per unstable neuron, per output
row and per bound side — and maximises the lower bound (minimises the upper bound) by
projected gradient ascent:

    α ← clip(α + η · sign(∂ bound / ∂ α), 0, 1)       (sign steps, as PGD uses)

with the gradient from nobound's own autodiff. The intermediate bounds [l, u] are
DeepPoly's and stay fixed; only the output pass is optimised. Because α is per row and
rows are independent, the best slopes seen for each row are kept, so with
``init="deeppoly"`` the result is never looser than DeepPoly.

Sigmoid and Tanh (Xu et al. 2021 optimise them too): the tangent at any point d of a range
is a sound line (:meth:`nobound.bounds.activations.SShapeStep.tangent_ranges` — a convex
box's lower line, a concave box's upper line, the tangents through the far end around 0),
so d = start + θ (stop − start) with θ ∈ [0, 1] per neuron, output row, side and line is
optimised by the same sign steps; DeepPoly's d is the start with ``init="deeppoly"``.

The paper's training variant (App. F.2) is ``init=0.5, steps=1, step_size=0.5``: every
unstable slope ends at 0 or 1 (0.5 where the bound does not depend on it), for about
twice the cost of DeepPoly.

Differentiability w.r.t. the parameters: the slope search runs on a detached copy of the
network; the final bound is recomputed with the chosen slopes held constant, so its
gradient is that of DeepPoly with those slopes (the search itself is not differentiated,
as α-CROWN is a non-differentiable relaxation: the paper trains it with PGPE).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from math import prod
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor, enable_grad, is_grad_enabled, no_grad
from nobound.bounds.deeppoly import DeepPoly, ReluRelaxation, deeppoly_relaxations, output_bounds
from nobound.bounds.linear_bounds import BoundResult
from nobound.bounds.network import Network
from nobound.bounds.plan import BoundsPlan
from nobound.bounds.regions import Box

BOTH_SIDES = ("lower", "upper")

# side → ReLU index → α, or (S-shape index, line) → θ; each (P', B, R, *neurons)
Slopes = dict[str, dict[Any, Tensor]]
# S-shape index → line → (movable, start, stop, DeepPoly's point) of its tangent points
TangentRanges = dict[int, dict[str, tuple[Any, Any, Any, Any]]]


def _with_slopes(relaxations: Mapping[int, ReluRelaxation], slopes: Slopes,
                 detach: bool, network: Network | None = None,
                 ranges: TangentRanges | None = None) -> dict[int, ReluRelaxation]:
    """Relaxations whose unstable neurons use α (per side and row); stable ones keep 0/1.
    S-shapes in ``ranges`` take the tangents at their θ; other activations keep their lines."""
    out = {}
    for index, relaxation in relaxations.items():
        if ranges and index in ranges:
            out[index] = _with_tangents(relaxation, network.steps[index], ranges[index],
                                        {side: {line: slopes[side][(index, line)]
                                                for line in ranges[index]} for side in slopes})
            continue
        if index not in slopes["lower"]:
            out[index] = relaxation
            continue
        unstable = relaxation.unstable
        mask = unstable.reshape(unstable.shape[:2] + (1,) + unstable.shape[2:])
        fixed = relaxation.lower_slope
        fixed = fixed.reshape(fixed.shape[:2] + (1,) + fixed.shape[2:])
        rows = {side: ops.where(mask, slopes[side][index], fixed) for side in slopes}
        upper_slope, intercept = relaxation.upper_slope, relaxation.upper_intercept
        if detach:
            upper_slope, intercept = Tensor(upper_slope.data), Tensor(intercept.data)
        out[index] = replace(relaxation, upper_slope=upper_slope, upper_intercept=intercept,
                             row_lower_slopes=rows)
    return out


def _with_tangents(relaxation: ReluRelaxation, step: Any,
                   ranges: dict[str, tuple[Any, Any, Any, Any]],
                   theta: dict[str, dict[str, Tensor]]) -> ReluRelaxation:
    """An S-shape's lines per side and row: the tangent at d = start + θ (stop − start)
    where the line's tangent point is movable, the relaxation's (constant) line elsewhere."""
    fixed = {"lower": (relaxation.lower_slope, relaxation.lower_intercept),
             "upper": (relaxation.upper_slope, relaxation.upper_intercept)}
    rows: dict[str, dict[str, Tensor]] = {}
    for side, per_line in theta.items():
        rows[side] = {}
        for line, (movable, start, stop, _) in ranges.items():
            row = per_line[line]
            expand = start.shape[:2] + (1,) + start.shape[2:]
            point = Tensor(start.reshape(expand)) + row * Tensor((stop - start).reshape(expand))
            slope, intercept = step.tangent(point)
            keep = movable.reshape(expand)
            rows[side][f"{line}_slope"] = ops.where(
                keep, slope, Tensor(fixed[line][0].data.reshape(expand)))
            rows[side][f"{line}_intercept"] = ops.where(
                keep, intercept, Tensor(fixed[line][1].data.reshape(expand)))
    return replace(relaxation, row_lines=rows)


def _tangent_ranges(network: Network, relaxations: Mapping[int, ReluRelaxation],
                    recorded: Mapping[int, Any]) -> TangentRanges:
    """The movable tangent points of every S-shaped layer (others: none)."""
    ranges: TangentRanges = {}
    for index in relaxations:
        step = network.steps[index]
        if not hasattr(step, "tangent_ranges") or index not in recorded:
            continue
        low, high = recorded[index]
        per_line = step.tangent_ranges(low.data, high.data)
        ranges[index] = {line: (movable, start, stop, point) for line,
                         (movable, start, stop, point, _) in per_line.items()}
    return ranges


def _initial_tangents(ranges: TangentRanges, rows: int, init: str | float,
                      slopes: Slopes) -> None:
    """θ of every movable tangent point into ``slopes``: DeepPoly's point, or ``init``."""
    for index, per_line in ranges.items():
        for line, (movable, start, stop, point) in per_line.items():
            xp = Tensor(start).xp
            span = stop - start
            theta = xp.where(movable & (span > 0), (point - start) / xp.where(
                span > 0, span, 1.0), 0.0) if init == "deeppoly" else \
                xp.full(start.shape, float(init), dtype=start.dtype)
            theta = xp.clip(theta, 0.0, 1.0)
            shape = theta.shape[:2] + (rows,) + theta.shape[2:]
            value = xp.broadcast_to(theta.reshape(theta.shape[:2] + (1,) + theta.shape[2:]),
                                    shape)
            for side in BOTH_SIDES:
                slopes[side][(index, line)] = Tensor(xp.array(value, copy=True))


def _optimised(relaxation: object) -> bool:
    """Whether α applies: a ReLU's eq. (5), whose lower line λ v has no intercept (another
    activation's lines, or a relaxation that is not two lines, stay as they are)."""
    return isinstance(relaxation, ReluRelaxation) and relaxation.lower_intercept is None


def _initial_slopes(relaxations: Mapping[int, ReluRelaxation], rows: int,
                    init: str | float) -> Slopes:
    slopes: Slopes = {side: {} for side in BOTH_SIDES}
    for index, relaxation in relaxations.items():
        if not _optimised(relaxation):
            continue
        start = relaxation.lower_slope.data
        shape = start.shape[:2] + (rows,) + start.shape[2:]
        xp = relaxation.lower_slope.xp
        if init == "deeppoly":
            value = xp.broadcast_to(start.reshape(start.shape[:2] + (1,) + start.shape[2:]),
                                    shape)
        else:
            value = xp.full(shape, float(init), dtype=start.dtype)
        for side in BOTH_SIDES:
            slopes[side][index] = Tensor(xp.array(value, copy=True))
    return slopes


def alpha_crown_bounds(network: Network, box: Box, spec: Tensor | None,
                       splits: Mapping[int, Any] | None, intermediate: Mapping[int, Any] | None,
                       plan: BoundsPlan, return_linear: bool, steps: int = 20,
                       step_size: float = 0.1, init: str | float = "deeppoly") -> BoundResult:
    """alpha-CROWN bounds (P', B, R) of C · f (or f) over ``box``: DeepPoly's intermediate
    bounds and driver, with λ of the output pass chosen per row by sign-gradient steps."""
    if init != "deeppoly" and not 0.0 <= float(init) <= 1.0:
        raise ValueError(f"alpha init must be 'deeppoly' or a slope in [0, 1], got {init!r}")
    if steps < 0 or step_size < 0:
        raise ValueError(f"alpha steps and step size must be ≥ 0, got {steps}, {step_size}")
    differentiable = is_grad_enabled() and network.requires_grad
    relaxations, recorded = deeppoly_relaxations(network, box, splits, intermediate, plan)
    rows = spec.shape[1] if spec is not None else prod(network.output_shape)
    detached_network = network.detached()
    detached_box = Box(Tensor(box.lower.data), Tensor(box.upper.data))
    detached_spec = None if spec is None else Tensor(spec.data)
    slopes = _initial_slopes(relaxations, rows, init)
    ranges = _tangent_ranges(network, relaxations, recorded)
    _initial_tangents(ranges, rows, init, slopes)

    def evaluate(current: Slopes) -> dict[str, Tensor]:
        bounds, _ = output_bounds(detached_network, detached_box, detached_spec,
                                  _with_slopes(relaxations, current, True, network, ranges),
                                  plan)
        return bounds

    best: dict[str, Tensor] | None = None
    best_slopes: Slopes = slopes
    for _ in range(steps):
        variables = {side: {i: Tensor(a.data, requires_grad=True) for i, a in per.items()}
                     for side, per in slopes.items()}
        with enable_grad():
            bounds = evaluate(variables)
            (bounds["lower"].sum() - bounds["upper"].sum()).backward()
        # the bounds just computed belong to the slopes before this step
        best, best_slopes = _keep_best(best, best_slopes, bounds, slopes)
        slopes = {side: {i: _ascend(a, step_size) for i, a in per.items()}
                  for side, per in variables.items()}
    with no_grad():
        best, best_slopes = _keep_best(best, best_slopes, evaluate(slopes), slopes)
    chosen = _with_slopes(relaxations, best_slopes, True, network, ranges)
    tangent_slopes = {index: (chosen[index].row_lines["lower"]["lower_slope"],
                              chosen[index].row_lines["lower"]["upper_slope"])
                      for index in ranges}
    if not differentiable and not return_linear:
        return BoundResult(best["lower"], best["upper"], "alpha-crown", recorded,
                           tangent_slopes=tangent_slopes)
    final, linear = output_bounds(network, box, spec,
                                  _with_slopes(relaxations, best_slopes, False, network,
                                               ranges), plan, keep_symbolic=return_linear)
    return BoundResult(final["lower"], final["upper"], "alpha-crown", recorded, linear,
                       tangent_slopes)


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


def _ascend(variable: Tensor, step_size: float) -> Tensor:
    """One projected sign-gradient step: α ← clip(α + η sign(g), 0, 1)."""
    xp = variable.xp
    gradient = variable.grad if variable.grad is not None else xp.zeros_like(variable.data)
    return Tensor(xp.clip(variable.data + step_size * xp.sign(gradient), 0.0, 1.0))


def _keep_best(best: dict[str, Tensor] | None, best_slopes: Slopes,
               current: dict[str, Tensor], slopes: Slopes
               ) -> tuple[dict[str, Tensor], Slopes]:
    """Per side and row, the tighter of two bounds and the slopes that gave it."""
    current = {side: Tensor(value.data) for side, value in current.items()}
    if best is None:
        return current, slopes
    xp = current["lower"].xp
    improved = {"lower": current["lower"].data > best["lower"].data,
                "upper": current["upper"].data < best["upper"].data}
    new_best = {side: Tensor(xp.where(improved[side], current[side].data, best[side].data))
                for side in BOTH_SIDES}
    new_slopes: Slopes = {}
    for side in BOTH_SIDES:
        new_slopes[side] = {}
        for index, alpha in slopes[side].items():
            mask = improved[side]  # (P', B, R)
            mask = mask.reshape(mask.shape + (1,) * (alpha.ndim - 3))
            new_slopes[side][index] = Tensor(xp.where(mask, alpha.data,
                                                      best_slopes[side][index].data))
    return new_best, new_slopes
