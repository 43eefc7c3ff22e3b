"""RGS: randomized gradient smoothing (paper §3.4, eq. 6; App. F.3; Duchi et al., 2012).

The gradient of the Gaussian-smoothed loss L_σ(θ) = E_{ε~N(0,σ²I)} L(θ + ε) is estimated by
averaging ordinary gradients at n_ps perturbed parameter vectors (eq. 6):

    ĝ = (1/n_ps) Σ_i ∇_θ L(θ + ε_i),      ε_i = σ z_i,  z_i ~ N(0, I_d).

For a differentiable L this is unbiased for ∇L_σ (differentiate under the expectation);
where L jumps (DeepPoly's discontinuities, App. B.3) it only sees the continuous part.

All n_ps members are evaluated in ONE batched pass: the perturbed parameters carry a leading
population axis (n_ps, *shape), the relaxation returns per-member losses (n_ps,), and one
backward pass of their *sum* gives every member's own gradient at once — member i's loss
depends only on member i's parameters, so ∂(Σ_j L_j)/∂θ_i = ∇L_i(θ_i). Averaging over the
population axis gives ĝ, which then goes through clipping and Adam exactly as in GRAD.
The paper's settings: n_ps = 2, σ = 10⁻³ decayed ×0.4 at the lr milestones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.backend import get_array_module, to_numpy
from nobound.nn.module import Module
from nobound.training.certified_loss import CertifiedObjective
from nobound.training.grad import GradMethod, step_metrics
from nobound.training.optim import Optimizer, clip_by_global_norm
from nobound.training.perturbation import ParameterLayout, standard_normal_directions
from nobound.training.population import PopulationLoss
from nobound.training.schedules import EpsilonRamp, Progress, StepDecay


def rgs_gradient(loss_of: PopulationLoss, layout: ParameterLayout, center: Any, sigma: float,
                 directions: Any) -> tuple[Any, np.ndarray]:
    """ĝ of eq. 6 and the member losses, from standard-normal ``directions`` (n_ps, d).

    ``loss_of`` maps parameters with a leading population axis to losses (n_ps,).
    """
    members = center[None, :] + sigma * directions
    params = layout.to_tensors(members, requires_grad=True)
    losses = loss_of(params)
    ops.sum(losses).backward()
    xp = get_array_module(center)
    grads = {name: p.grad if p.grad is not None else xp.zeros_like(p.data)
             for name, p in params.items()}
    member_gradients = layout.flatten_population(grads)
    return member_gradients.mean(axis=0), to_numpy(losses.data).astype(np.float64)


class RGSMethod(GradMethod):
    """GRAD's loop with the gradient replaced by the RGS estimate of eq. 6."""

    name = "rgs"

    def __init__(self, model: Module, objective: CertifiedObjective, optimizer: Optimizer,
                 eps_schedule: EpsilonRamp, lr_schedule: StepDecay, sigma_schedule: StepDecay,
                 population_size: int = 2, clip_norm: float = 10.0, seed: int = 0) -> None:
        super().__init__(model, objective, optimizer, eps_schedule, lr_schedule, clip_norm)
        if population_size < 1:
            raise ValueError(f"RGS needs a population of at least 1, got {population_size}")
        self.sigma_schedule, self.population_size, self.seed = \
            sigma_schedule, population_size, seed
        self.layout = ParameterLayout.of(self.optimizer.params)

    def step(self, x: Any, targets: Any, progress: Progress) -> dict[str, float]:
        eps = self.prepare(progress)
        sigma = self.sigma_schedule(progress.epoch)
        center = self.layout.flatten(self.optimizer.params)
        directions = standard_normal_directions(
            self.seed, progress.epoch, progress.step, range(self.population_size),
            self.layout.size, name="rgs-noise", xp=get_array_module(center), dtype=center.dtype)
        results = []

        def loss_of(params: dict) -> Any:
            results.append(self.objective(self.model, x, targets, eps, params=params))
            return results[-1].loss

        gradient, _ = rgs_gradient(loss_of, self.layout, center, sigma, directions)
        grads = self.layout.unflatten(gradient)
        norm = clip_by_global_norm(grads, self.clip_norm)
        self.optimizer.step(grads)
        return step_metrics(results[0], eps=eps, lr=self.optimizer.lr, sigma=sigma,
                            grad_norm=norm)
