"""alpha-CROWN's optimised intermediate bounds (``intermediate_steps`` > 0).

Xu et al. 2021 optimise the intermediate bounds too: the bounds [l, u] of the input z_k of
every activation after the first are tightened in order before the output pass
(:mod:`nobound.bounds.alpha_crown`). The rows ±e_i of z_k's neurons (a ReLU's unstable ones,
every one of an S-shape with l < u) are bounded through the network truncated at z_k, whose
activations below use the already tightened bounds, with their own slopes per row and side —
the same sign steps from DeepPoly's slopes, so each row's bound starts at DeepPoly's on the
tightened layers below. Every iterate is a sound bound of z_k, so the best one intersected
with the earlier [l, u] is too; a bound that narrows [l, u] by less than ``MIN_GAIN`` of its
width is not applied (it would cost a proof checker a row for nothing). Layer k is then
relaxed again (its S-shape tangent ranges recomputed) and the next layer follows. Each
applied bound comes with the slopes that proved it (:class:`TightenedLayer`), so a checker
can re-derive it. The tightened bounds are constants: a differentiable bound is
differentiated as DeepPoly's with them held fixed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from math import prod
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.alpha_slopes import (
    BOTH_SIDES,
    Slopes,
    TangentRanges,
    initial_slopes,
    initial_tangents,
    row_lines,
    sign_ascent,
    tangent_ranges,
    with_slopes,
)
from nobound.bounds.deeppoly import ReluRelaxation, bound_rows, exact_by_intervals, relax
from nobound.bounds.network import Network, ReluStep
from nobound.bounds.plan import BoundsPlan
from nobound.bounds.regions import Box
from nobound.bounds.rows import DenseRows, RowSet, dense_chunk


@dataclass
class TightenedLayer:
    """Optimised bounds of the input neurons of one activation (module doc): rows e_i of
    the neurons ``neurons`` (flat indices, (R,)) bounded through the
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



# A tightened bound that narrows its neuron's interval by less than this fraction of the
# width is not applied: it would cost the proof checker a row for nothing.
MIN_GAIN = 1e-4


# Copies of the per-row slopes a layer's search holds at once (values, gradients, best).
SLOPE_COPIES = 4


def tighten_intermediate(network: Network, detached: tuple[Network, Box],
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
        slopes = initial_slopes(below, count, "deeppoly")
        initial_tangents(below_ranges, count, "deeppoly", slopes)
        evaluate = partial(neuron_bounds, network, detached, relaxations, ranges, index,
                           neurons, plan)
        now = time.perf_counter()
        share = deadline if math.isinf(deadline) else \
            now + (deadline - now) / (len(layers) - position + 1)
        best, best_slopes, taken = sign_ascent(evaluate, slopes, steps, step_size, share)
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
        ranges.update(tangent_ranges(network, {index: relaxations[index]}, recorded))
        chosen = with_slopes(below, best_slopes, True, network, below_ranges)
        tightened.append(TightenedLayer(
            index, neurons, best["lower"].data, best["upper"].data, applied,
            {side: row_lines(chosen, side) for side in BOTH_SIDES}, taken,
            time.perf_counter() - start))
    return tightened


def neuron_bounds(network: Network, detached: tuple[Network, Box],
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
                           with_slopes(below, slopes, True, network, below_ranges))
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
