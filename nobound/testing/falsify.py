"""Projected gradient search for inputs that push C f(x) past a claimed bound.

A bound is only as credible as the strongest attempt to break it. Sampling probes the
region blindly; this search follows the gradient. For every batch element b and spec row
k it runs two searches in the box l ≤ x ≤ u, one maximising and one minimising
v_{bk}(x) = C_b[k] · f(x), with signed, projected steps (PGD; Madry et al., 2018)

    x ← clip(x ± α_t (u − l) ⊙ sign(∇_x v_{bk}(x)), l, u),

the step fraction α_t shrinking geometrically. All 2·B·K searches run as one batch through
the network's autodiff. The result is the extreme value seen along the way: a sound upper
bound must lie above every maximum found, a sound lower bound below every minimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor
from nobound.backend import get_array_module


@dataclass
class ExtremeValues:
    """(B, K) the smallest and largest C f(x) found, and where: (B, K, *input_shape)."""

    minimum: Any
    maximum: Any
    argmin: Any
    argmax: Any


def extreme_spec_values(model: Any, lower: Any, upper: Any, spec: Any, start_min: Any,
                        start_max: Any, steps: int = 10, first_step: float = 0.25,
                        last_step: float = 0.01) -> ExtremeValues:
    """Search min and max of spec · model(x) over each box (see the module docstring).

    ``lower``/``upper``: (B, *shape); ``spec``: (B, K, outputs); ``start_min``/``start_max``:
    (B, K, *shape) starting points inside the boxes (e.g. the best sampled points).
    """
    xp = get_array_module(lower)
    batch, rows = spec.shape[:2]
    shape = tuple(lower.shape[1:])
    low = xp.broadcast_to(lower[None, :, None], (2, batch, rows, *shape))
    high = xp.broadcast_to(upper[None, :, None], (2, batch, rows, *shape))
    width = high - low
    points = xp.clip(xp.stack([start_min, start_max]), low, high)
    direction = xp.asarray([-1.0, 1.0], dtype=points.dtype).reshape(2, 1, 1)
    fractions = np.geomspace(first_step, last_step, steps) if steps > 1 else [first_step]
    best = [xp.full((batch, rows), xp.inf), xp.full((batch, rows), -xp.inf)]
    best_points = [points[0].copy(), points[1].copy()]
    for step in range(steps + 1):
        candidate = Tensor(points.reshape(2 * batch * rows, *shape), requires_grad=True)
        logits = model(candidate)
        values = (logits.reshape(2, batch, rows, -1) * Tensor(spec[None])).sum(axis=-1)
        for side, better in ((0, xp.less), (1, xp.greater)):
            improved = better(values.data[side], best[side])
            best[side] = xp.where(improved, values.data[side], best[side])
            best_points[side][improved] = points[side][improved]
        if step == steps:
            break
        (values * Tensor(direction)).sum().backward()
        gradient = candidate.grad.reshape(points.shape)
        points = xp.clip(points + fractions[step] * width * xp.sign(gradient), low, high)
    return ExtremeValues(best[0], best[1], best_points[0], best_points[1])
