"""Known bounds and branch-and-bound splits of ReLU inputs, applied by every relaxation.

Before a ReLU is relaxed, the bounds [l, u] of its input are refined: intersected with bounds
the caller already knows (``intermediate``) and clamped by branch-and-bound splits — a split
+1 means "v ≥ 0 on this sub-problem" (l ← max(l, 0)), −1 means "v ≤ 0" (u ← min(u, 0)) — so
split neurons become stable and their relaxation exact on the sub-problem's part of the
region.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import unwrap


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
