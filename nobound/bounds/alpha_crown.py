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

Intermediate bounds (``intermediate_steps`` > 0; Xu et al. 2021 optimise them too): the
bounds [l, u] of the input z_k of every activation after the first are tightened in order
before the output pass. The rows ±e_i of z_k's neurons (a ReLU's unstable ones, every one of
an S-shape with l < u) are bounded through the network truncated at z_k, whose activations
below use the already tightened bounds, with their own slopes per row and side — the same
sign steps from DeepPoly's slopes, so each row's bound starts at DeepPoly's on the tightened
layers below. Every iterate is a sound bound of z_k, so the best one intersected with the
earlier [l, u] is too; a bound that narrows [l, u] by less than ``MIN_GAIN`` of its width is
not applied (it would cost a proof checker a row for nothing). Layer k is then relaxed again
(its S-shape tangent ranges recomputed) and the next layer follows. Each applied bound comes
with the slopes that proved it (:class:`TightenedLayer`), so a checker can re-derive it. The
tightened bounds are constants: a differentiable bound is differentiated as DeepPoly's with
them held fixed.

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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from math import prod
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor, enable_grad, is_grad_enabled, no_grad
from nobound.bounds.deeppoly import (
    DeepPoly,
    ReluRelaxation,
    bound_rows,
    deeppoly_relaxations,
    exact_by_intervals,
    output_bounds,
    relax,
)
from nobound.bounds.linear_bounds import BoundResult
from nobound.bounds.network import Network, ReluStep
from nobound.bounds.plan import BoundsPlan
from nobound.bounds.regions import Box
from nobound.bounds.rows import DenseRows, RowSet, dense_chunk
from nobound.bounds.specification import as_spec_tensor

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
    return optimised_bounds(network, box, spec, splits, intermediate, plan, return_linear,
                            steps, step_size, init).bounds


@dataclass
class TightenedLayer:
    """Optimised bounds of the input neurons of one activation (module doc, "Intermediate
    bounds"): rows e_i of the neurons ``neurons`` (flat indices, (R,)) bounded through the
    layers below with their own slopes per row and side.

    ``lower``/``upper`` (P', B, R): each row's best bound; ``applied`` {side: (P', B, R)}:
    where it narrowed the earlier bound (by more than :data:`MIN_GAIN` of its width) and
    was intersected in; ``slopes`` {side: {activation j below: per-row lines}}: a ReLU's
    lower slopes α (P', B, R, *n_j), an S-shape's (lower-line, upper-line) slopes — what
    proved each row (the upper side proves −z ≥ −u). ``steps`` sign steps were taken in
    ``seconds`` of wall time."""

    index: int
    neurons: Any
    lower: Any
    upper: Any
    applied: dict[str, Any]
    slopes: dict[str, dict[int, Any]]
    steps: int
    seconds: float


@dataclass
class OptimisedBounds:
    """:func:`optimised_bounds`' answer: the output ``bounds``, the layers whose input
    bounds were tightened before them, in order, and ``output_slopes`` — the lower side's
    per-row lines of every activation behind ``bounds.lower`` (as in
    :class:`TightenedLayer`)."""

    bounds: BoundResult
    tightened: list[TightenedLayer]
    output_slopes: dict[int, Any]


# A tightened bound that narrows its neuron's interval by less than this fraction of the
# width is not applied: it would cost the proof checker a row for nothing.
MIN_GAIN = 1e-4


# Copies of the per-row slopes a layer's search holds at once (values, gradients, best).
SLOPE_COPIES = 4


def optimised_bounds(network: Network, box: Box, spec: Tensor | None,
                     splits: Mapping[int, Any] | None, intermediate: Mapping[int, Any] | None,
                     plan: BoundsPlan, return_linear: bool, steps: int = 20,
                     step_size: float = 0.1, init: str | float = "deeppoly",
                     intermediate_steps: int = 0, intermediate_step_size: float = 0.1,
                     deadline: float = math.inf) -> OptimisedBounds:
    """alpha-CROWN: DeepPoly's intermediate bounds, tightened layer by layer with
    ``intermediate_steps`` sign steps per layer when > 0 (module doc), then the output
    pass with ``steps``. ``deadline`` (a ``time.perf_counter`` reading) is shared evenly
    by the layers still to tighten and the output pass; each stops its steps at its share
    (every layer still gets its starting point's bound)."""
    if init != "deeppoly" and not 0.0 <= float(init) <= 1.0:
        raise ValueError(f"alpha init must be 'deeppoly' or a slope in [0, 1], got {init!r}")
    if min(steps, intermediate_steps) < 0 or min(step_size, intermediate_step_size) < 0:
        raise ValueError(f"alpha steps and step sizes must be ≥ 0, got {steps}, {step_size}, "
                         f"{intermediate_steps}, {intermediate_step_size}")
    differentiable = is_grad_enabled() and network.requires_grad
    relaxations, recorded = deeppoly_relaxations(network, box, splits, intermediate, plan)
    detached = (network.detached(), Box(Tensor(box.lower.data), Tensor(box.upper.data)))
    ranges = _tangent_ranges(network, relaxations, recorded)
    tightened = []
    if intermediate_steps > 0:
        tightened = _tighten_intermediate(network, detached, relaxations, recorded, ranges,
                                          plan, intermediate_steps, intermediate_step_size,
                                          deadline)
    rows = spec.shape[1] if spec is not None else prod(network.output_shape)
    detached_spec = None if spec is None else Tensor(spec.data)
    slopes = _initial_slopes(relaxations, rows, init)
    _initial_tangents(ranges, rows, init, slopes)

    def evaluate(current: Slopes) -> dict[str, Tensor]:
        bounds, _ = output_bounds(*detached, detached_spec,
                                  _with_slopes(relaxations, current, True, network, ranges),
                                  plan)
        return bounds

    best, best_slopes, _ = _sign_ascent(evaluate, slopes, steps, step_size, deadline)
    chosen = _with_slopes(relaxations, best_slopes, True, network, ranges)
    output_slopes = _row_lines(chosen, "lower")
    tangent_slopes = {index: (chosen[index].row_lines["lower"]["lower_slope"],
                              chosen[index].row_lines["lower"]["upper_slope"])
                      for index in ranges}
    if not differentiable and not return_linear:
        result = BoundResult(best["lower"], best["upper"], "alpha-crown", recorded,
                             tangent_slopes=tangent_slopes)
        return OptimisedBounds(result, tightened, output_slopes)
    final, linear = output_bounds(network, box, spec,
                                  _with_slopes(relaxations, best_slopes, False, network,
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


def _sign_ascent(evaluate: Callable[[Slopes], dict[str, Tensor]], slopes: Slopes, steps: int,
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


def _row_lines(chosen: Mapping[int, ReluRelaxation], side: str) -> dict[int, Any]:
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


def _tighten_intermediate(network: Network, detached: tuple[Network, Box],
                          relaxations: dict[int, ReluRelaxation], recorded: dict[int, Any],
                          ranges: TangentRanges, plan: BoundsPlan, steps: int,
                          step_size: float, deadline: float) -> list[TightenedLayer]:
    """Tighten the input bounds of every ReLU and S-shape after the first, in order (module doc),
    updating ``relaxations``, ``recorded`` and ``ranges`` in place; one
    :class:`TightenedLayer` per layer that had neurons to bound."""
    # ReLUs and S-shapes (a max pool's input keeps its bounds)
    layers = [step for step in network.steps
              if (isinstance(step, ReluStep) or hasattr(step, "tangent_ranges"))
              and not exact_by_intervals(network, step.index - 1)]
    tightened = []
    for position, step in enumerate(layers):
        start = time.perf_counter()
        index = step.index
        low, high = recorded[index]
        xp = low.xp
        lead, n = low.shape[:2], prod(low.shape[2:])
        flat_low, flat_high = low.data.reshape(*lead, n), high.data.reshape(*lead, n)
        # a ReLU is exact on a stable neuron whatever its bounds; an S-shape is not
        open_ = (flat_low < 0) & (flat_high > 0) if isinstance(step, ReluStep) else \
            flat_low < flat_high
        neurons = xp.flatnonzero(open_.reshape(-1, n).any(axis=0))
        if neurons.size == 0:
            continue
        below = {i: r for i, r in relaxations.items() if i < index}
        below_ranges = {i: r for i, r in ranges.items() if i < index}
        count = int(neurons.size)
        # per-row slopes of every layer below (θ per line of an S-shape), per side; the
        # search holds a few copies (values, gradients, the best): wide convolutional
        # layers would not fit, and keep their bounds
        numbers = 2 * count * sum(prod(network.steps[i].input_shape) * len(below_ranges.get(
            i, (None,))) for i in below) * lead[0] * lead[1]
        if SLOPE_COPIES * numbers * low.data.itemsize > plan.memory_budget_bytes:
            continue
        slopes = _initial_slopes(below, count, "deeppoly")
        _initial_tangents(below_ranges, count, "deeppoly", slopes)
        evaluate = partial(_neuron_bounds, network, detached, relaxations, ranges, index,
                           neurons, plan)
        now = time.perf_counter()
        share = deadline if math.isinf(deadline) else \
            now + (deadline - now) / (len(layers) - position + 1)
        best, best_slopes, taken = _sign_ascent(evaluate, slopes, steps, step_size, share)
        old_low, old_high = flat_low[..., neurons], flat_high[..., neurons]
        gain = MIN_GAIN * (old_high - old_low)
        applied = {"lower": best["lower"].data > old_low + gain,
                   "upper": best["upper"].data < old_high - gain}
        new_low, new_high = flat_low.copy(), flat_high.copy()
        new_low[..., neurons] = xp.where(applied["lower"], best["lower"].data, old_low)
        new_high[..., neurons] = xp.where(applied["upper"], best["upper"].data, old_high)
        shape = low.shape
        low = ops.where(new_low.reshape(shape) != low.data, Tensor(new_low.reshape(shape)), low)
        high = ops.where(new_high.reshape(shape) != high.data, Tensor(new_high.reshape(shape)),
                         high)
        recorded[index] = (low, high)
        relaxations[index] = relax(step, low, high)
        ranges.update(_tangent_ranges(network, {index: relaxations[index]}, recorded))
        chosen = _with_slopes(below, best_slopes, True, network, below_ranges)
        tightened.append(TightenedLayer(
            index, neurons, best["lower"].data, best["upper"].data, applied,
            {side: _row_lines(chosen, side) for side in BOTH_SIDES}, taken,
            time.perf_counter() - start))
    return tightened


def _neuron_bounds(network: Network, detached: tuple[Network, Box],
                   relaxations: Mapping[int, ReluRelaxation], ranges: TangentRanges,
                   index: int, neurons: Any, plan: BoundsPlan, slopes: Slopes
                   ) -> dict[str, Tensor]:
    """{side: (P', B, R)}: bounds of the input neurons ``neurons`` (flat) of activation
    ``index`` with per-row ``slopes`` for the activations below it (as the output pass's:
    α of each ReLU, θ of each S-shape's tangent points). Sound for any slopes in range."""
    detached_network, detached_box = detached
    below = {i: r for i, r in relaxations.items() if i < index}
    below_ranges = {i: r for i, r in ranges.items() if i < index}
    rows = _unit_rows(network, index - 1, detached_box, plan, neurons)
    bounds, _ = bound_rows(detached_network, index - 1, detached_box, rows,
                           _with_slopes(below, slopes, True, network, below_ranges))
    return bounds


def _unit_rows(network: Network, end: int, box: Box, plan: BoundsPlan, neurons: Any) -> RowSet:
    """Unit rows e_i of node ``end`` for the flat neuron indices ``neurons``, shared by the
    batch, in chunks that fit the plan."""
    shape = network.steps[end].output_shape
    like = box.lower
    xp = like.xp

    def make(start: int, stop: int) -> DenseRows:
        count = stop - start
        rows = xp.zeros((count, prod(shape)), dtype=like.dtype)
        rows[xp.arange(count), neurons[start:stop]] = 1
        return DenseRows(Tensor(rows.reshape((1, 1, 1, count, *shape))))

    return RowSet(int(neurons.size), dense_chunk(network, end, box, plan), make)


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
