"""DeepPoly (Singh et al. 2019), mathematically identical to CROWN (Zhang et al. 2018).

Every node v gets linear bounds in the network input x (eq. 4),

    A_l x + a_l  ≤  v  ≤  A_u x + a_u,                                              (4)

by *back-substitution*: to bound rows c of a node (c = e_i for its neuron i, or the rows
of a specification C), start from c v ≤ c v ≤ c v and replace each layer's output by an
expression in that layer's input, walking back to x:

* affine z = W v + b (exact):   A z = (A W) v + A b;
* ReLU z = ReLU(v) with v ∈ [l, u], relaxed neuron by neuron (eq. 5, Fig. 2b):

      λ v  ≤  ReLU(v)  ≤  s v + t,     s = u / (u − l),  t = −s l                   (5)

  exact for stable neurons (λ = s = 1, t = 0 if l ≥ 0; all 0 if u ≤ 0); for l < 0 < u
  any λ ∈ [0, 1] is sound and DeepPoly takes λ = 1[u > −l] (the area heuristic). The lower
  bound takes the lower line where a coefficient is positive, the upper line where it is
  negative (A⁺ = max(A, 0), A⁻ = min(A, 0)):

      A z ≥ (A⁺ λ + A⁻ s) v + A⁻ t,          A z ≤ (A⁺ s + A⁻ λ) v + A⁺ t.

Over the input box x ∈ [c − r, c + r] the linear bounds become numbers — the
concretisation, coordinate by coordinate the box end that makes each term smallest:

      min_x A x + a = A c − |A| r + a,       max_x A x + a = A c + |A| r + a.      (2)

The algorithm: for each ReLU in order, bound its input neurons (back-substitute through the
earlier, already relaxed layers, then concretise) and relax it by eq. (5); finally
back-substitute the rows of C. One row per neuron makes DeepPoly quadratic in depth. The
same driver serves the other linear relaxations with another source of [l, u] or λ:
CROWN-IBP takes every [l, u] from IBP (eq. 3) and back-substitutes C only (linear in depth);
alpha-CROWN (:mod:`nobound.bounds.alpha_crown`) optimises λ per output row.

Shortcuts (all but the second change no relaxation):

* a ReLU input reached from the box through ReLU-free layers with at most one dense map is
  bounded by eq. (3), exact there (a dense map of a box has exactly that interval hull);
* only neurons an interval pre-check cannot prove stable get rows: a stable neuron's
  relaxation is exact whatever its bounds, so the pre-check's bounds serve for it. Where the
  pre-check proves a neuron stable that eq. (4) alone would not (it happens on IBP-trained
  networks, whose interval bounds are tight), that neuron is relaxed exactly instead of by
  eq. (5): sound either way, and usually tighter. Decided per sample (auto_LiRPA decides
  per neuron for the whole batch, so its bounds can differ from these there);
* a Sigmoid's or Tanh's input keeps the intersection of eq. (4)'s and the pre-check's
  bounds (each holds); a ReLU's keeps eq. (4)'s alone, as the paper defines DeepPoly;
* which rows, in which layout (whole maps or receptive-field windows) and in chunks of what
  size is :mod:`nobound.bounds.rows`'s business, under the plan (:mod:`nobound.bounds.plan`);
  how A W is computed (a matrix product, a transposed convolution) is the layer's
  (:mod:`nobound.bounds.steps`). Here A is a layout; ``A.A`` its coefficients. Compiled
  one-pass versions of the ReLU step and of eq. (2) (:mod:`nobound.bounds.kernels`) take
  over on NumPy arrays, with hand-written VJPs — the same sums, in another order.

Shapes: coefficients (P', S, B', R, *node) — population, bound side (S = 1 while lower and
upper coincide, before the first ReLU, else 2), batch, rows; biases (P', S, B', R).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.ibp import interval_bounds, interval_precheck
from nobound.bounds.kernels import fused_concretise, fused_relu_back_step
from nobound.bounds.linear_bounds import BoundResult, LinearBounds
from nobound.bounds.network import Network, ReluStep, Step
from nobound.bounds.plan import BoundsPlan
from nobound.bounds.regions import Box
from nobound.bounds.rows import (
    ReluLines,
    RowSet,
    contract,
    members_per_chunk,
    neuron_rows,
    per_side,
    spec_rows,
)
from nobound.bounds.splits import refine_bounds

Bounds = dict[int, tuple[Tensor, Tensor]]  # ReLU index → (l, u) of its input


@dataclass
class ReluRelaxation:
    """Eq. (5) for one ReLU layer: λ (``lower_slope``), s, t of shape (P', B, *neurons).

    ``unstable`` marks l < 0 < u (the only neurons whose λ is a free choice);
    ``row_lower_slopes`` optionally overrides λ per side and row (alpha-CROWN):
    ``{"lower" | "upper": Tensor (P', B, R, *neurons)}``; ``row_lines`` likewise all four
    lines' tensors of another activation (alpha-CROWN's tangent points on S-shapes):
    ``{side: {"lower_slope" | "lower_intercept" | "upper_slope" | "upper_intercept": …}}``.
    """

    lower_slope: Tensor
    upper_slope: Tensor
    upper_intercept: Tensor
    unstable: Any
    row_lower_slopes: dict[str, Tensor] | None = None
    lower_intercept: Tensor | None = None  # other activations: λ v + t_l ≤ σ(v)
    row_lines: dict[str, dict[str, Tensor]] | None = None

    def rows(self, start: int, stop: int) -> ReluRelaxation:
        """The relaxation restricted to back-substitution rows start…stop−1."""
        def cut(per_side: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if per_side is None else {
                side: cut(v) if isinstance(v, dict) else v[:, :, start:stop]
                for side, v in per_side.items()}
        return replace(self, row_lower_slopes=cut(self.row_lower_slopes),
                       row_lines=cut(self.row_lines))


def relax_relu(l: Tensor, u: Tensor) -> ReluRelaxation:  # noqa: E741 - the paper's l
    """Eq. (5) with the area heuristic λ = 1[u > −l]; exact for stable neurons."""
    xp = l.xp
    unstable = (l.data < 0) & (u.data > 0)
    active = l.data >= 0
    width = ops.where(unstable, u - l, 1.0)  # a safe denominator: no 0/0 in value or gradient
    s = ops.where(unstable, u / width, xp.asarray(active, dtype=l.dtype))
    t = ops.where(unstable, -(s * l), 0.0)
    lam = xp.where(unstable, u.data > -l.data, active).astype(l.dtype)
    return ReluRelaxation(Tensor(lam), s, t, unstable)


def relax(step: Step, l: Tensor, u: Tensor) -> ReluRelaxation:  # noqa: E741
    """Eq. (5) for a ReLU; any other activation step brings its own two lines."""
    return relax_relu(l, u) if isinstance(step, ReluStep) else step.relax(l, u)


def _sides(lower: Tensor, upper: Tensor) -> Tensor:
    """Stack a lower-side and an upper-side tensor on the side axis (1), broadcasting."""
    shape = tuple(max(a, b) for a, b in zip(lower.shape, upper.shape, strict=True))
    return ops.concatenate([ops.broadcast_to(lower, shape), ops.broadcast_to(upper, shape)],
                           axis=1)


def relu_back_step(A: Tensor, a: Tensor | None, lines: ReluLines,  # noqa: N803
                   ndim: int) -> tuple[Tensor, Tensor]:
    """Eq. (4) through a ReLU: A ↦ A ⊙ (λ or s, by the sign of A and the side),
    a ↦ a + A⁻ t (lower side) or a + A⁺ t (upper side) — plus A⁺ t_l (lower), A⁻ t_l
    (upper) for an activation whose lower line has an intercept t_l."""
    if (fused := fused_relu_back_step(A, a, lines, ndim)) is not None:
        return fused
    lam = lines.lower_slope
    s, t, t_l = (per_side(line) for line in
                 (lines.upper_slope, lines.intercept, lines.lower_intercept))
    lower_A, upper_A = A[:, :1], A[:, A.shape[1] - 1:]  # noqa: N806 - S = 1 serves both
    a_lower = contract(ops.negative_part(lower_A), t["lower"], ndim)
    a_upper = contract(ops.positive_part(upper_A), t["upper"], ndim)
    if lines.lower_intercept is not None:
        a_lower = a_lower + contract(ops.positive_part(lower_A), t_l["lower"], ndim)
        a_upper = a_upper + contract(ops.negative_part(upper_A), t_l["upper"], ndim)
    a_new = _sides(a_lower, a_upper)
    slope = ops.where(A.data >= 0, _sides(lam["lower"], s["upper"]),
                      _sides(s["lower"], lam["upper"]))
    return A * slope, a_new if a is None else a + a_new


def back_substitute(network: Network, end: int, A: Any, relaxations: dict[int, ReluRelaxation],
                    stop: int = -1) -> tuple[Any, Tensor | None]:  # noqa: N803
    """Eq. (4): rows A of node ``end`` as (A', a) in node ``stop`` (−1: the input x)."""
    a = None
    for step in reversed(network.steps[stop + 1:end + 1]):
        if step.activation:
            if step.index not in relaxations:
                raise ValueError(f"no relaxation for the activation at layer {step.index}")
            relaxation = relaxations[step.index]
            if not isinstance(relaxation, ReluRelaxation):  # not two lines (e.g. max pooling)
                A, a = relaxation.back_substitute(A, a)  # noqa: N806
                continue
            lines = A.relu_lines(relaxation, step.index)
            coefficients, a = relu_back_step(A.A, a, lines, len(step.input_shape))
            A = A.replaced(coefficients)  # noqa: N806
            continue
        A, term = A.through(step)  # noqa: N806 - (A W, A b): the layer's business
        if term is not None:
            a = term if a is None else a + term
    return A, a


def concretise(A: Any, a: Tensor | None, box: Box) -> dict[str, Tensor]:  # noqa: N803
    """Eq. (2) over the input box: {"lower": A c − |A| r + a, "upper": A c + |A| r + a},
    each (P', B, R) — the one concretisation every relaxation uses."""
    if (fused := fused_concretise(A, a, box)) is not None:
        return fused
    c, r = A.input_box(box)
    value = contract(A.A, c, A.ndim, A.per_row)
    if a is not None:
        value = value + a
    spread = contract(ops.abs(A.A), r, A.ndim, A.per_row)
    upper = spread.shape[1] - 1  # the upper side's entry (0 while the sides coincide)
    return {"lower": value[:, 0] - spread[:, 0],
            "upper": value[:, min(upper, value.shape[1] - 1)] + spread[:, upper]}


def bound_rows(network: Network, end: int, box: Box, rows: RowSet,
               relaxations: dict[int, ReluRelaxation], keep_symbolic: bool = False
               ) -> tuple[Any, LinearBounds | None]:
    """Back-substitute (eq. 4) and concretise (eq. 2) every chunk of ``rows`` of node
    ``end``; returns (``rows.place`` of {side: (P', B, R)}, LinearBounds or None)."""
    pieces: dict[str, list[Tensor]] = {"lower": [], "upper": []}
    symbolic = []
    for start, stop, A in rows.chunks():  # noqa: N806
        chunk = {index: relaxation.rows(start, stop) for index, relaxation in relaxations.items()}
        A, a = back_substitute(network, end, A, chunk)  # noqa: N806
        for side, value in concretise(A, a, box).items():
            pieces[side].append(value)
        if keep_symbolic:
            symbolic.append((A.A, a))
    bounds = {side: values[0] if len(values) == 1 else ops.concatenate(values, axis=-1)
              for side, values in pieces.items() if values}
    linear = LinearBounds.from_rows(symbolic, box.batch_size, network.input_shape) \
        if keep_symbolic else None
    return rows.place(bounds), linear


def exact_by_intervals(network: Network, end: int) -> bool:
    """Whether eq. (3) is exact for node ``end``: no ReLU and ≤ 1 dense map before it."""
    steps = network.steps[:end + 1]
    return not any(s.activation for s in steps) and sum(s.dense for s in steps) <= 1


def deeppoly_relaxations(network: Network, box: Box, splits: Any, intermediate: Any,
                         plan: BoundsPlan) -> tuple[dict[int, ReluRelaxation], Bounds]:
    """Bound and relax every ReLU in order: ({index: eq. 5}, {index: (l, u) of its input}).

    Known ``intermediate`` bounds and ``splits`` refine [l, u] before each relaxation
    (:mod:`nobound.bounds.splits`), the pre-check's bounds too.
    """
    relaxations: dict[int, ReluRelaxation] = {}
    recorded: Bounds = {}
    for step in network.steps:
        if not step.activation:
            continue
        end = step.index - 1
        if exact_by_intervals(network, end):
            l, u = interval_precheck(network, end, box, {})  # noqa: E741
        else:
            prior = refine_bounds(step.index, *interval_precheck(network, end, box, recorded),
                                  intermediate, splits)
            # stable neurons are exact only for a ReLU: other activations bound every one
            rows = neuron_rows(network, end, box, plan, relaxations,
                               prior if isinstance(step, ReluStep) else None)
            (l, u), _ = bound_rows(network, end, box, rows, relaxations)  # noqa: E741
            if getattr(step, "intersects_interval", False):  # S-shapes (module doc)
                l, u = ops.maximum(l, prior[0]), ops.minimum(u, prior[1])  # noqa: E741
        l, u = refine_bounds(step.index, l, u, intermediate, splits)  # noqa: E741
        recorded[step.index] = (l, u)
        relaxations[step.index] = relax(step, l, u)
    return relaxations, recorded


def output_bounds(network: Network, box: Box, spec: Tensor | None,
                  relaxations: dict[int, ReluRelaxation], plan: BoundsPlan,
                  keep_symbolic: bool = False) -> tuple[dict[str, Tensor], LinearBounds | None]:
    """The rows of C (or the identity over the outputs) back-substituted and concretised:
    ({side: (P', B, R)}, their LinearBounds with ``keep_symbolic``)."""
    return bound_rows(network, len(network.steps) - 1, box, spec_rows(network, box, spec, plan),
                      relaxations, keep_symbolic)


@dataclass(frozen=True)
class DeepPoly:
    """DeepPoly/CROWN as a :class:`nobound.bounds.relaxation.Relaxation`: [l, u] of every
    ReLU by back-substitution, then the rows of C."""

    name: str = "deeppoly"
    differentiable: bool = True
    rows_per_sample: bool = True  # one row per unstable neuron of each sample

    def relu_relaxations(self, network: Network, box: Box, splits: Any, intermediate: Any,
                         plan: BoundsPlan) -> tuple[dict[int, ReluRelaxation], Bounds]:
        return deeppoly_relaxations(network, box, splits, intermediate, plan)

    def bound(self, network: Network, box: Box, spec: Tensor | None, splits: Any,
              intermediate: Any, plan: BoundsPlan, return_linear: bool,
              options: dict[str, Any]) -> BoundResult:
        relaxations, recorded = self.relu_relaxations(network, box, splits, intermediate, plan)
        bounds, linear = output_bounds(network, box, spec, relaxations, plan, return_linear)
        return BoundResult(bounds["lower"], bounds["upper"], self.name, recorded, linear)

    def members_per_chunk(self, network: Network, box: Box, plan: BoundsPlan) -> int:
        return members_per_chunk(network, box, plan, exact_by_intervals)


@dataclass(frozen=True)
class CrownIbp(DeepPoly):
    """CROWN-IBP (Zhang et al. 2020): the same driver, with [l, u] from IBP (eq. 3)."""

    name: str = "crown-ibp"
    rows_per_sample: bool = False  # only the rows of C

    def relu_relaxations(self, network: Network, box: Box, splits: Any, intermediate: Any,
                         plan: BoundsPlan) -> tuple[dict[int, ReluRelaxation], Bounds]:
        _, _, recorded = interval_bounds(network, box, splits, intermediate)
        return {i: relax(network.steps[i], l, u) for i, (l, u) in recorded.items()}, recorded

    def members_per_chunk(self, network: Network, box: Box, plan: BoundsPlan) -> int:
        return network.population or 1  # no intermediate back-substitution
