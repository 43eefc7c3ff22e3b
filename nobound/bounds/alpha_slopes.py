"""The variables alpha-CROWN optimises, and the sign-gradient ascent that moves them.

α: a ReLU's lower slope, one per unstable neuron, output row and bound side, anywhere in
[0, 1] (eq. 5 holds for every such λ). θ: where an S-shape's tangent line touches, as a
fraction of its sound range, per neuron, row, side and line. Both are arrays laid out
(P', B, R, *neurons), kept per side in a :data:`Slopes` mapping; :func:`with_slopes` turns
them into per-row relaxations the DeepPoly driver back-substitutes, and
:func:`sign_ascent` takes projected sign-gradient steps

    α ← clip(α + η · sign(∂ bound / ∂ α), 0, 1)

keeping, per row and side, the best bound seen and the variables that gave it. Used by the
output pass (:mod:`nobound.bounds.alpha_crown`) and the intermediate bounds
(:mod:`nobound.bounds.alpha_crown_intermediate`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor, enable_grad, no_grad
from nobound.bounds.deeppoly import ReluRelaxation
from nobound.bounds.network import Network

BOTH_SIDES = ("lower", "upper")

# side → ReLU index → α, or (S-shape index, line) → θ; each (P', B, R, *neurons)
Slopes = dict[str, dict[Any, Tensor]]
# S-shape index → line → (movable, start, stop, DeepPoly's point) of its tangent points
TangentRanges = dict[int, dict[str, tuple[Any, Any, Any, Any]]]


def with_slopes(relaxations: Mapping[int, ReluRelaxation], slopes: Slopes,
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


def tangent_ranges(network: Network, relaxations: Mapping[int, ReluRelaxation],
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


def initial_tangents(ranges: TangentRanges, rows: int, init: str | float,
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


def initial_slopes(relaxations: Mapping[int, ReluRelaxation], rows: int,
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


def sign_ascent(evaluate: Callable[[Slopes], dict[str, Tensor]], slopes: Slopes, steps: int,
                 step_size: float, deadline: float = math.inf
                 ) -> tuple[dict[str, Tensor], Slopes, int]:
    """``steps`` projected sign-gradient steps on every row's bound from ``slopes``, none
    begun after ``deadline``: (the best bound of each row and side, its slopes, the steps
    taken). The starting point is always evaluated."""
    best: dict[str, Tensor] | None = None
    best_slopes: Slopes = slopes
    taken = 0
    for _ in range(steps):
        if time.perf_counter() > deadline:
            break
        variables = {side: {i: Tensor(a.data, requires_grad=True) for i, a in per.items()}
                     for side, per in slopes.items()}
        with enable_grad():
            bounds = evaluate(variables)
            (bounds["lower"].sum() - bounds["upper"].sum()).backward()
        # the bounds just computed belong to the slopes before this step
        best, best_slopes = _keep_best(best, best_slopes, bounds, slopes)
        slopes = {side: {i: _ascend(a, step_size) for i, a in per.items()}
                  for side, per in variables.items()}
        taken += 1
    with no_grad():
        best, best_slopes = _keep_best(best, best_slopes, evaluate(slopes), slopes)
    return best, best_slopes, taken


def row_lines(chosen: Mapping[int, ReluRelaxation], side: str) -> dict[int, Any]:
    """Per activation, one side's per-row lines as arrays: a ReLU's α, an S-shape's
    (lower-line, upper-line) slopes (activations without per-row lines are left out)."""
    lines: dict[int, Any] = {}
    for index, relaxation in chosen.items():
        if not isinstance(relaxation, ReluRelaxation):  # e.g. max pooling: no lines
            continue
        if relaxation.row_lines is not None:
            per_row = relaxation.row_lines[side]
            lines[index] = (per_row["lower_slope"].data, per_row["upper_slope"].data)
        elif relaxation.row_lower_slopes is not None:
            lines[index] = relaxation.row_lower_slopes[side].data
    return lines


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
