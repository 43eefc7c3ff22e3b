"""Linear relaxations of y = ReLU(v) for v ∈ [l, u] (Fig. 2b, eq. 5).

DeepPoly/CROWN bound each neuron between two lines

    λ v  ≤  ReLU(v)  ≤  s v + t,                                                   (5)

* stable active (l ≥ 0):   λ = s = 1, t = 0       (exact);
* stable inactive (u ≤ 0): λ = s = 0, t = 0       (exact);
* unstable (l < 0 < u):    s = u / (u − l),  t = −s l   (the chord through (l, 0), (u, u)),
  and any λ ∈ [0, 1] is sound; DeepPoly takes λ = 1[u > −l], the choice that minimises
  the area between the two lines (the *area heuristic*); alpha-CROWN optimises λ.

The pre-activation bounds themselves are first refined: intersected with bounds the caller
already knows (``intermediate``) and clamped by branch-and-bound splits — a split +1
means "v ≥ 0 on this sub-problem" (l ← max(l, 0)), −1 means "v ≤ 0" (u ← min(u, 0)) — so
split neurons become stable and their relaxation exact on the sub-problem's part of the
region.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import unwrap


@dataclass
class ReluRelaxation:
    """λ v ≤ ReLU(v) ≤ s v + t for one ReLU layer; tensors of shape (P', B, *neurons).

    ``unstable`` marks l < 0 < u (the only neurons whose λ is a free choice).
    ``row_lower_slopes`` optionally overrides λ per bound side and back-substitution row
    (alpha-CROWN): ``{"lower" | "upper": Tensor (P', B, R, *neurons)}``.
    """

    lower_slope: Tensor
    upper_slope: Tensor
    upper_intercept: Tensor
    unstable: Any
    row_lower_slopes: dict[str, Tensor] | None = None

    def rows(self, start: int, stop: int) -> ReluRelaxation:
        """The relaxation restricted to back-substitution rows start…stop−1."""
        if self.row_lower_slopes is None:
            return self
        chosen = {side: slopes[:, :, start:stop] for side, slopes in
                  self.row_lower_slopes.items()}
        return ReluRelaxation(self.lower_slope, self.upper_slope, self.upper_intercept,
                              self.unstable, chosen)


def upper_line(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Any]:
    """(s, t, unstable) of the upper line in eq. (5), exact for stable neurons."""
    xp = lower.xp
    unstable = (lower.data < 0) & (upper.data > 0)
    active = lower.data >= 0
    # a safe denominator keeps 0/0 out of both the value and its gradient
    width = ops.where(unstable, upper - lower, 1.0)
    slope = ops.where(unstable, upper / width, xp.asarray(active, dtype=lower.dtype))
    intercept = ops.where(unstable, -(slope * lower), 0.0)
    return slope, intercept, unstable


def deeppoly_relaxation(lower: Tensor, upper: Tensor) -> ReluRelaxation:
    """Eq. (5) with the area heuristic λ = 1[u > −l] (Singh et al. 2019; Zhang et al. 2018)."""
    slope, intercept, unstable = upper_line(lower, upper)
    active = lower.data >= 0
    heuristic = upper.data > -lower.data
    xp = lower.xp
    lower_slope = xp.where(unstable, heuristic, active).astype(lower.dtype)
    return ReluRelaxation(Tensor(lower_slope), slope, intercept, unstable)


def fixed_slope_relaxation(lower: Tensor, upper: Tensor, slope_value: float) -> ReluRelaxation:
    """Eq. (5) with λ = ``slope_value`` ∈ [0, 1] on every unstable neuron."""
    if not 0.0 <= slope_value <= 1.0:
        raise ValueError(f"a ReLU lower slope must lie in [0, 1], got {slope_value}")
    slope, intercept, unstable = upper_line(lower, upper)
    xp = lower.xp
    lower_slope = xp.where(unstable, slope_value, lower.data >= 0).astype(lower.dtype)
    return ReluRelaxation(Tensor(lower_slope), slope, intercept, unstable)


def _population_shaped(array: Any, like: Tensor) -> Tensor:
    """An array of shape (B, *n) or (P, B, *n), as a Tensor of ``like``'s rank (P', B, *n)."""
    tensor = array if isinstance(array, Tensor) else \
        Tensor(like.xp.asarray(unwrap(array), dtype=like.dtype))
    if tensor.ndim == like.ndim - 1:
        tensor = tensor.reshape((1, *tensor.shape))
    if tensor.ndim != like.ndim or tensor.shape[1:] != like.shape[1:]:
        raise ValueError(f"bounds of shape {tensor.shape} do not fit neurons of shape "
                         f"{like.shape[1:]} (expected (B, *neurons) or (P, B, *neurons))")
    return tensor


def refine_bounds(index: int, lower: Tensor, upper: Tensor,
                  intermediate: Mapping[int, Any] | None,
                  splits: Mapping[int, Any] | None) -> tuple[Tensor, Tensor]:
    """Intersect with known bounds of ReLU ``index``'s input, then clamp split neurons.

    ``lower``/``upper`` are (P', B, *neurons). Known bounds and splits may omit P'.
    """
    if intermediate is not None and index in intermediate:
        known_lower, known_upper = intermediate[index]
        lower = ops.maximum(lower, _population_shaped(known_lower, lower))
        upper = ops.minimum(upper, _population_shaped(known_upper, upper))
    if splits is not None and index in splits:
        xp = lower.xp
        split = _population_shaped(xp.asarray(unwrap(splits[index])), lower).data
        lower = ops.where(split > 0, ops.maximum(lower, 0.0), lower)
        upper = ops.where(split < 0, ops.minimum(upper, 0.0), upper)
    return lower, upper
