"""The three loss-landscape scores of the paper's Fig. 5 (§3.2), for a sampled 1-D curve.

Given values f(t_k) of a (normalised) loss on an evenly spaced grid t_k = t_0 + k·h:

* discontinuity  — the largest finite difference   max_k |f(t_{k+1}) − f(t_k)| / h;
* non-smoothness — the mean second difference  mean_k |f(t_{k−1}) − 2 f(t_k) + f(t_{k+1})| / h²;
* sensitivity    — the deviation from convexity (§3.1)
  D(f) = max_{x, y, λ ∈ [0, 1]} f(λx + (1−λ)y) − λ f(x) − (1−λ) f(y),
  evaluated over all grid triples t_i < t_k < t_j (λ is then fixed by t_k's position),
  which is exact for the sampled curve. D ≤ 0 iff the sampled curve is convex.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _grid(values: Any, step: float) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size < 3:
        raise ValueError("a landscape score needs at least 3 samples")
    if step <= 0:
        raise ValueError(f"grid step must be positive, got {step}")
    return values


def max_finite_difference(values: Any, step: float) -> float:
    """max_k |f(t_{k+1}) − f(t_k)| / h: large where the curve jumps (discontinuity)."""
    values = _grid(values, step)
    return float(np.max(np.abs(np.diff(values))) / step)


def mean_second_difference(values: Any, step: float) -> float:
    """mean_k |f(t_{k−1}) − 2 f(t_k) + f(t_{k+1})| / h²: average curvature (non-smoothness)."""
    values = _grid(values, step)
    return float(np.mean(np.abs(values[:-2] - 2 * values[1:-1] + values[2:])) / step**2)


def deviation_from_convexity(values: Any) -> float:
    """D(f) over grid triples i < k < j: f(t_k) − [λ f(t_i) + (1−λ) f(t_j)], λ = (j−k)/(j−i).

    Vectorised over (i, j) for each k; O(n³) work, fine for the few hundred points of a plot.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    n = values.size
    if n < 3:
        raise ValueError("deviation from convexity needs at least 3 samples")
    index = np.arange(n)
    best = -np.inf
    for k in range(1, n - 1):
        left, right = index[:k], index[k + 1:]
        i, j = np.meshgrid(left, right, indexing="ij")
        weight_left = (j - k) / (j - i)
        chord = weight_left * values[i] + (1 - weight_left) * values[j]
        best = max(best, float(np.max(values[k] - chord)))
    return best


def landscape_scores(values: Any, step: float) -> dict[str, float]:
    """All three scores of Fig. 5 for one curve."""
    return {
        "max_finite_difference": max_finite_difference(values, step),
        "mean_second_difference": mean_second_difference(values, step),
        "deviation_from_convexity": deviation_from_convexity(values),
    }
