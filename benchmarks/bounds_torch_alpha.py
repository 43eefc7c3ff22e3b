"""alpha-CROWN in PyTorch, the baseline of ``bounds_speed.py`` (see ``bounds_torch.py``).

As ``nobound/bounds/alpha_crown.py``: DeepPoly's relaxations and intermediate bounds, then
lower slopes α — one per side, specification row and neuron, started at DeepPoly's — are
improved by projected sign-gradient steps α ← clip(α + η sign(∂bound/∂α), 0, 1), with the
gradient from PyTorch autograd, keeping per row the best bound seen and its slopes.
"""

from __future__ import annotations

import torch
from bounds_torch import (
    SIDES,
    Recorded,
    Relaxation,
    Slopes,
    deeppoly_relaxations,
    output_bounds,
)
from bounds_torch_network import TorchLayer


def alpha_crown(layers: list[TorchLayer], lower: torch.Tensor, upper: torch.Tensor,
                spec: torch.Tensor, recorded: Recorded | None = None, steps: int = 20,
                step_size: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha-CROWN from DeepPoly's slopes: α ← clip(α + η sign(∂bound/∂α), 0, 1)."""
    center, radius = (upper + lower) * 0.5, (upper - lower) * 0.5
    relaxations = deeppoly_relaxations(layers, center, radius, recorded)
    rows = spec.shape[1]

    def start(relaxation: Relaxation) -> torch.Tensor:
        slope = relaxation.lower_slope.unsqueeze(1)
        return slope.expand((slope.shape[0], rows) + tuple(slope.shape[2:])).clone()

    slopes = {side: {i: start(r) for i, r in relaxations.items()} for side in SIDES}

    def evaluate(current: Slopes) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = {side: {i: torch.where(r.unstable.unsqueeze(1), current[side][i],
                                        r.lower_slope.unsqueeze(1))
                         for i, r in relaxations.items()} for side in SIDES}
        return output_bounds(layers, center, radius, spec, relaxations, chosen)

    best, best_slopes = None, slopes
    for _ in range(steps):
        variables = {side: {i: a.detach().requires_grad_() for i, a in per.items()}
                     for side, per in slopes.items()}
        with torch.enable_grad():
            bounds = evaluate(variables)
            (bounds[0].sum() - bounds[1].sum()).backward()
        best, best_slopes = _keep_best(best, bounds, slopes, best_slopes)
        slopes = {side: {i: (a.detach() + step_size * torch.sign(a.grad)).clamp(0, 1)
                         for i, a in per.items()} for side, per in variables.items()}
    with torch.no_grad():
        best, _ = _keep_best(best, evaluate(slopes), slopes, best_slopes)
    return best


def _keep_best(best: tuple[torch.Tensor, torch.Tensor] | None,
               bounds: tuple[torch.Tensor, torch.Tensor], slopes: Slopes, best_slopes: Slopes
               ) -> tuple[tuple[torch.Tensor, torch.Tensor], Slopes]:
    """Per side and row the tighter bound, and the slopes that gave it."""
    bounds = tuple(b.detach() for b in bounds)
    if best is None:
        return bounds, slopes
    improved = (bounds[0] > best[0], bounds[1] < best[1])
    new_best = tuple(torch.where(m, b, o) for m, b, o in zip(improved, bounds, best,
                                                             strict=True))
    new_slopes = {}
    for position, side in enumerate(SIDES):
        new_slopes[side] = {}
        for index, alpha in slopes[side].items():
            mask = improved[position].reshape(improved[position].shape
                                              + (1,) * (alpha.dim() - 2))
            new_slopes[side][index] = torch.where(mask, alpha, best_slopes[side][index])
    return new_best, new_slopes
