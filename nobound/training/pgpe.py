"""PGPE: policy gradients with parameter-based exploration (paper §3.3, App. F.2).

PGPE (Sehnke et al., 2010) minimises the Gaussian-smoothed loss
L_σ(θ) = E_{ε~N(0, diag σ²)} L(θ + ε) without ever differentiating L. Per step it samples
n = n_ps/2 directions ε_i = σ ⊙ z_i (z_i ~ N(0, I_d)), evaluates the losses of the
symmetric pairs r_i^± = L(θ ± ε_i), turns them into fitness weights w_i^± (the raw losses,
or centred ranks) and forms, as evotorch's ``SymmetricSeparableGaussian`` does,

    g_θ = (1/n) Σ_i (w_i^+ − w_i^−)/2 · ε_i                                   (centre)
    g_σ = (1/n) Σ_i ((w_i^+ + w_i^−)/2 − b) · (ε_i² − σ²)/σ,  b = mean of all 2n w   (sigma)

which are the paper's ∇_θ L̂_σ ∝ Σ ε_i (r_i^+ − r_i^−) and
∇_σ L̂_σ ∝ Σ ((r_i^+ + r_i^−)/2 − b)(ε_i² − σ²)/σ. With raw weights, g_θ / σ² is an unbiased
estimate of ∇L_σ (Stein's lemma: ∇L_σ = E[ε L(θ+ε)]/σ², symmetrised), see docs/gls.md.
θ moves against g_θ with ClipUp or Adam; σ moves against g_σ with a plain step of size
η_σ, and each σ_j may change by at most a fraction c of itself per step (evotorch's
``stdev_max_change``, default 0.2, after Ha 2017).

The 2n members are evaluated on the same minibatch in batched calls over the population
axis (chunks sized to a memory budget). The noise comes from counter-based streams
(:mod:`nobound.training.perturbation`) and is regenerated for the gradient instead of being
stored unless it is small. No gradient of L is needed, so any relaxation works, including
alpha-CROWN with its slope optimisation inside the loss (§4.3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nobound.backend import get_array_module, to_numpy, unwrap
from nobound.nn.module import Module
from nobound.training.certified_loss import CertifiedObjective
from nobound.training.clipup import ClipUp
from nobound.training.grad import GradMethod
from nobound.training.optim import Adam, Optimizer
from nobound.training.perturbation import ParameterLayout, standard_normal_directions
from nobound.training.population import evaluate_population
from nobound.training.schedules import EpsilonRamp, Progress, StepDecay

RANKINGS = ("raw", "centered")
CENTER_OPTIMIZERS = ("clipup", "adam")


@dataclass(frozen=True)
class PGPEConfig:
    """PGPE hyperparameters; defaults are the paper's where it states them, else evotorch's.

    Paper (§4.1, App. F.2): population_size 256, stdev_init 10⁻³, centre lr 3·10⁻⁴ (decayed
    ×0.4 after epochs 110, 130 — the schedule lives outside, in the lr StepDecay).
    evotorch's ``PGPE`` defaults: optimizer "clipup" (momentum 0.9, max speed 2 × lr),
    ranking_method "centered", stdev_max_change 0.2, symmetric sampling. evotorch has no
    default stdev_learning_rate; the paper does not state one; 0.1 is evotorch's examples'.
    """

    population_size: int = 256
    stdev_init: float = 1e-3
    stdev_learning_rate: float = 0.1
    stdev_max_change: float | None = 0.2
    stdev_min: float | None = None
    stdev_max: float | None = None
    ranking: str = "centered"
    chunk_size: int | None = None
    keep_noise_bytes: float = 256e6

    def __post_init__(self) -> None:
        if self.population_size < 2 or self.population_size % 2:
            raise ValueError(f"PGPE samples symmetric pairs: population size must be even "
                             f"and ≥ 2, got {self.population_size}")
        if self.ranking not in RANKINGS:
            raise ValueError(f"unknown ranking {self.ranking!r}; choose from {RANKINGS}")
        if self.stdev_init <= 0:
            raise ValueError(f"stdev_init must be positive, got {self.stdev_init}")
        if self.stdev_max_change is not None and not 0 < self.stdev_max_change < 1:
            raise ValueError("stdev_max_change must lie in (0, 1)")
        if self.chunk_size is not None and (self.chunk_size < 2 or self.chunk_size % 2):
            raise ValueError(f"chunk size must be even and ≥ 2, got {self.chunk_size}")


def centered_ranks(losses: np.ndarray) -> np.ndarray:
    """Linearly spaced ranks in [−½, ½], the lowest loss getting −½ (Salimans et al., 2017;
    evotorch's "centered"). Ties are broken by position (stable sort)."""
    count = len(losses)
    ranks = np.empty(count)
    ranks[np.argsort(losses, kind="stable")] = np.arange(count) / max(count - 1, 1) - 0.5
    return ranks


def fitness_weights(losses: np.ndarray, ranking: str) -> np.ndarray:
    """The weights w that replace the losses in the estimator (lower is better)."""
    if ranking == "raw":
        return np.asarray(losses, dtype=np.float64)
    if ranking == "centered":
        return centered_ranks(np.asarray(losses))
    raise ValueError(f"unknown ranking {ranking!r}; choose from {RANKINGS}")


def pgpe_gradients(weights: np.ndarray, sigma: Any,
                   directions: Callable[[int, int], Any],
                   chunk: int | None = None) -> tuple[Any, Any]:
    """(g_θ, g_σ) of the module docstring from member weights ordered +,−,+,−,… (2n,).

    ``directions(first, last)`` returns z_first … z_{last−1}, shape (last − first, d), the
    standard normal rows with ε_i = σ ⊙ z_i; it is called chunk by chunk so the noise can be
    regenerated rather than stored. Since ε_i² − σ² = σ²(z_i² − 1):
    g_θ = σ ⊙ Σ_i a_i z_i and g_σ = σ ⊙ Σ_i c_i (z_i² − 1) with per-direction scalars a, c.
    """
    xp = get_array_module(sigma)
    weights = np.asarray(weights, dtype=np.float64)
    plus, minus = weights[0::2], weights[1::2]
    count = len(plus)
    baseline = weights.mean()
    center_coefficients = (plus - minus) / 2 / count
    sigma_coefficients = ((plus + minus) / 2 - baseline) / count
    chunk = count if not chunk else chunk
    center_sum = xp.zeros_like(sigma)
    sigma_sum = xp.zeros_like(sigma)
    for first in range(0, count, chunk):
        last = min(first + chunk, count)
        z = directions(first, last)
        a = xp.asarray(center_coefficients[first:last], dtype=z.dtype)
        c = xp.asarray(sigma_coefficients[first:last], dtype=z.dtype)
        center_sum += a @ z
        sigma_sum += c @ (z * z - 1)
    return sigma * center_sum, sigma * sigma_sum


def updated_sigma(sigma: Any, sigma_gradient: Any, config: PGPEConfig) -> Any:
    """σ − η_σ g_σ, kept within σ(1 ± c) and [stdev_min, stdev_max] (evotorch's order)."""
    xp = get_array_module(sigma)
    new = sigma - config.stdev_learning_rate * sigma_gradient
    if config.stdev_max_change is not None:
        change = config.stdev_max_change
        new = xp.clip(new, sigma * (1 - change), sigma * (1 + change))
    if config.stdev_min is not None or config.stdev_max is not None:
        new = xp.clip(new, config.stdev_min, config.stdev_max)
    return new.astype(sigma.dtype, copy=False)


def make_center_optimizer(name: str, params: Mapping[str, Any], lr: float,
                          momentum: float = 0.9, max_speed: float | None = None) -> Optimizer:
    """ClipUp (evotorch's default for PGPE) or Adam for the centre θ."""
    if name == "clipup":
        return ClipUp(params, lr, momentum=momentum, max_speed=max_speed)
    if name == "adam":
        return Adam(params, lr)
    raise ValueError(f"unknown PGPE optimiser {name!r}; choose from {CENTER_OPTIMIZERS}")


class PGPEMethod(GradMethod):
    """PGPE on the certified loss: learns the centre θ (the network) and per-parameter σ."""

    name = "pgpe"

    def __init__(self, model: Module, objective: CertifiedObjective, optimizer: Optimizer,
                 eps_schedule: EpsilonRamp, lr_schedule: StepDecay,
                 config: PGPEConfig = PGPEConfig(), seed: int = 0) -> None:
        super().__init__(model, objective, optimizer, eps_schedule, lr_schedule, clip_norm=0)
        self.config, self.seed = config, seed
        self.layout = ParameterLayout.of(self.optimizer.params)
        center = self.layout.flatten(self.optimizer.params)
        self.sigma = get_array_module(center).full(self.layout.size, config.stdev_init,
                                                   dtype=center.dtype)

    def directions(self, progress: Progress) -> Callable[[int, int], Any]:
        """z_first … z_{last−1} of this step, regenerated from the counters each call."""
        xp = get_array_module(self.sigma)

        def rows(first: int, last: int) -> Any:
            return standard_normal_directions(self.seed, progress.epoch, progress.step,
                                              range(first, last), self.layout.size,
                                              name="pgpe-noise", xp=xp,
                                              dtype=self.sigma.dtype)
        return rows

    def step(self, x: Any, targets: Any, progress: Progress) -> dict[str, float]:
        eps = self.prepare(progress)
        center = self.layout.flatten(self.optimizer.params)
        directions = self.directions(progress)
        pairs = self.config.population_size // 2
        noise_bytes = pairs * self.layout.size * self.sigma.itemsize
        if noise_bytes <= self.config.keep_noise_bytes:
            stored = directions(0, pairs)
            directions = lambda first, last: stored[first:last]  # noqa: E731

        def member_vectors(start: int, stop: int) -> Any:
            first, last = start // 2, (stop + 1) // 2
            offsets = self.sigma * directions(first, last)
            xp = get_array_module(offsets)
            rows = xp.empty((2 * (last - first), self.layout.size), dtype=offsets.dtype)
            rows[0::2] = center + offsets
            rows[1::2] = center - offsets
            return rows[start - 2 * first:stop - 2 * first]

        parts: list[tuple[int, Any]] = []

        def loss_of(params: dict) -> Any:
            result = self.objective(self.model, x, targets, eps, params=params)
            parts.append((result.loss.shape[0], result))
            return result.loss

        losses = evaluate_population(
            loss_of, self.layout, member_vectors, self.config.population_size,
            self.config.chunk_size, record_graph=self.objective.relaxation == "alpha-crown")
        weights = fitness_weights(losses, self.config.ranking)
        dir_chunk = None if not self.config.chunk_size else self.config.chunk_size // 2
        center_gradient, sigma_gradient = pgpe_gradients(weights, self.sigma, directions,
                                                         dir_chunk)
        self.optimizer.step(self.layout.unflatten(center_gradient))
        self.sigma = updated_sigma(self.sigma, sigma_gradient, self.config)
        return self._metrics(parts, eps)

    def _metrics(self, parts: list[tuple[int, Any]], eps: float) -> dict[str, float]:
        total = sum(count for count, _ in parts)

        def average(field: str) -> float:
            return sum(float(to_numpy(unwrap(getattr(r, field))).sum())
                       for _, r in parts) / total

        metrics = {name: average(name) for name in
                   ("loss", "robust_loss", "natural_loss", "certified_accuracy",
                    "natural_accuracy")}
        metrics.update(eps=eps, lr=self.optimizer.lr, sigma=float(self.sigma.mean()))
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["pgpe/sigma"] = to_numpy(self.sigma)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        xp = get_array_module(self.sigma)
        self.sigma = xp.asarray(state["pgpe/sigma"], dtype=self.sigma.dtype)
