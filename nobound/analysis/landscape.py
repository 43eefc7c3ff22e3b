"""The loss of a network along a direction in parameter space, raw and Gaussian-smoothed.

Paper §3.2, Fig. 4: for parameters θ, a unit direction d and a grid of offsets t,

    f(t) = L(θ + t d) / L(θ)                          (the normalised original loss)
    f_σ(t) = E_ε[L(θ + t d + ε)] / L(θ),  ε ~ N(0, σ² I)   (its Gaussian smoothing, GLS)

with the expectation estimated from ``samples`` draws and shown with a 95% confidence
band (mean ± 1.96 standard errors). The default direction is the normalised descent
direction of the DeepPoly loss, as in the paper. Every grid point (and every noise
sample) is one member of a population, so a whole curve is a few batched calls.

By default every grid point reuses the same noise draws (common random numbers), which
shows the smoothed loss itself. With ``independent_samples=True`` each point draws its
own noise, which shows the *estimate* PGPE sees with a population of ``samples``
members — noisy for small populations (App. C, Figs. 8 and 10; :func:`pgpe_surfaces`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nobound.autodiff import no_grad
from nobound.backend import random_stream, to_numpy
from nobound.nn.module import Module
from nobound.training.certified_loss import certified_loss
from nobound.training.perturbation import ParameterLayout


@dataclass
class LandscapeCurve:
    relaxation: str
    sigma: float
    offsets: list[float]
    mean: list[float]
    band_low: list[float]
    band_high: list[float]
    scores: dict[str, float] = field(default_factory=dict)


def population_losses(model: Module, layout: ParameterLayout, vectors: Any, x: Any,
                      targets: Any, eps: float, relaxation: str, chunk: int = 64) -> np.ndarray:
    """L(θ_p) for each row θ_p of ``vectors`` (P, d), evaluated ``chunk`` members at a time."""
    losses = []
    with no_grad():
        for start in range(0, vectors.shape[0], chunk):
            params = layout.to_tensors(vectors[start:start + chunk])
            result = certified_loss(model, x, targets, eps, relaxation, params=params)
            losses.append(to_numpy(result.loss.data).reshape(-1))
    return np.concatenate(losses)


def descent_direction(model: Module, x: Any, targets: Any, eps: float,
                      relaxation: str = "deeppoly") -> np.ndarray:
    """−∇L / ‖∇L‖ for the relaxation's certified loss at the current parameters."""
    params = dict(model.named_parameters())
    layout = ParameterLayout.of(params)
    for p in params.values():
        p.grad = None
    certified_loss(model, x, targets, eps, relaxation).loss.backward()
    gradient = layout.flatten({k: (p.grad if p.grad is not None else 0 * p.data)
                               for k, p in params.items()})
    norm = float(np.linalg.norm(to_numpy(gradient)))
    if norm == 0.0:
        raise ValueError(f"the {relaxation} loss has zero gradient here; give a direction")
    return -to_numpy(gradient) / norm


def loss_landscape(model: Module, x: Any, targets: Any, eps: float,
                   relaxations: Sequence[str], sigmas: Sequence[float], offsets: Any,
                   direction: Any = None, samples: int = 128, seed: int = 0,
                   chunk: int = 64, independent_samples: bool = False,
                   include_original: bool = True) -> list[LandscapeCurve]:
    """Curves of Fig. 4: for each relaxation, σ = 0 (original) and each σ in ``sigmas``."""
    from nobound.analysis.landscape_scores import landscape_scores

    params = dict(model.named_parameters())
    layout = ParameterLayout.of(params)
    theta = to_numpy(layout.flatten(params)).astype(np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    if direction is None:
        direction = descent_direction(model, x, targets, eps, "deeppoly")
    direction = np.asarray(direction, dtype=np.float64).reshape(-1)
    dtype = next(iter(params.values())).dtype
    xp = next(iter(params.values())).xp
    step = float(offsets[1] - offsets[0]) if offsets.size > 1 else 1.0
    curves = []
    for relaxation in relaxations:
        def losses_at(vectors: np.ndarray, relaxation: str = relaxation) -> np.ndarray:
            return population_losses(model, layout, xp.asarray(vectors, dtype=dtype), x,
                                     targets, eps, relaxation, chunk)

        reference = float(losses_at(theta[None, :])[0])
        if reference <= 0:
            raise ValueError(f"{relaxation} loss at θ is {reference}; cannot normalise")
        line = theta[None, :] + offsets[:, None] * direction[None, :]
        if include_original:
            original = losses_at(line) / reference
            curves.append(LandscapeCurve(relaxation, 0.0, offsets.tolist(), original.tolist(),
                                         original.tolist(), original.tolist(),
                                         landscape_scores(original, step)))
        for index, sigma in enumerate(sigmas):
            def noise_for(point: int, index: int = index, sigma: float = sigma,
                          relaxation: str = relaxation) -> np.ndarray:
                counters = (index, point) if independent_samples else (index,)
                rng = random_stream(seed, *counters, name=f"landscape-{relaxation}")
                return rng.normal(0.0, sigma, (samples, theta.size))

            values = np.stack([losses_at(point[None, :] + noise_for(k))
                               for k, point in enumerate(line)]) / reference
            mean = values.mean(axis=1)
            half_width = 1.96 * values.std(axis=1, ddof=1) / math.sqrt(samples)
            curves.append(LandscapeCurve(relaxation, float(sigma), offsets.tolist(),
                                         mean.tolist(), (mean - half_width).tolist(),
                                         (mean + half_width).tolist(),
                                         landscape_scores(mean, step)))
    return curves


def pgpe_surfaces(model: Module, x: Any, targets: Any, eps: float, relaxation: str,
                  sigmas: Sequence[float], population_sizes: Sequence[int], offsets: Any,
                  direction: Any = None, seed: int = 0) -> list[tuple[int, LandscapeCurve]]:
    """The smoothed loss as PGPE estimates it: fresh samples at every point (Figs. 8, 10).

    One curve per (population size, σ); small populations give visibly noisy surfaces.
    """
    curves = []
    for population_size in population_sizes:
        for curve in loss_landscape(model, x, targets, eps, [relaxation], sigmas, offsets,
                                    direction=direction, samples=population_size, seed=seed,
                                    independent_samples=True, include_original=False):
            curves.append((int(population_size), curve))
    return curves
