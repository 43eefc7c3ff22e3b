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

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.backend import get_array_module, to_numpy
from nobound.nn.module import Module
from nobound.training.certified_loss import CertifiedLoss
from nobound.training.grad import (
    add_certified_arguments,
    certified_metrics,
    certified_options_from_args,
    make_objective,
    natural_metrics,
    objective_options,
)
from nobound.training.method import StepContext, StepResult, TrainingMethod
from nobound.training.perturbation import ParameterLayout, standard_normal_directions
from nobound.training.population import PopulationLoss
from nobound.training.schedules import StepDecay


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


class RGSTraining(TrainingMethod):
    """GRAD's step with the gradient replaced by the RGS estimate of eq. 6.

    σ follows a step decay on the fractional epoch: σ₀ · factor^(#milestones passed) — the
    paper decays it ×0.4 at the lr milestones (App. F.3), which is what the command line
    passes when ``--sigma-milestones`` is not given.
    """

    name = "rgs"

    def __init__(self, relaxation: str = "deeppoly", robust_weight: float = 1.0,
                 l1: float = 0.0, bound_options: Mapping[str, Any] | None = None,
                 population_size: int = 2, sigma: float = 1e-3,
                 sigma_milestones: Sequence[int] = (), sigma_factor: float = 0.4) -> None:
        if population_size < 1:
            raise ValueError(f"RGS needs a population of at least 1, got {population_size}")
        if sigma < 0 or sigma_factor <= 0:
            raise ValueError("RGS needs sigma ≥ 0 and a positive sigma decay factor")
        self.objective = make_objective(relaxation, robust_weight, l1, bound_options)
        self.population_size = int(population_size)
        self.sigma_schedule = StepDecay(float(sigma), tuple(int(m) for m in sigma_milestones),
                                        float(sigma_factor))

    def options(self) -> dict[str, Any]:
        return {**objective_options(self.objective), "population_size": self.population_size,
                "sigma": self.sigma_schedule.base,
                "sigma_milestones": list(self.sigma_schedule.milestones),
                "sigma_factor": self.sigma_schedule.factor}

    def compute_step(self, model: Module, images: Any, labels: Any,
                     context: StepContext) -> StepResult:
        params = dict(model.named_parameters())
        layout = ParameterLayout.of(params)
        center = layout.flatten(params)
        sigma = self.sigma_schedule(context.progress)
        directions = standard_normal_directions(
            context.seed, context.epoch, context.step, range(self.population_size),
            layout.size, name="rgs-noise", xp=get_array_module(center), dtype=center.dtype)
        results: list[CertifiedLoss] = []

        def loss_of(member_params: dict) -> Any:
            results.append(self.objective(model, images, labels, context.eps,
                                          params=member_params,
                                          natural_metrics=self.objective.robust_weight < 1))
            return results[-1].loss

        gradient, _ = rgs_gradient(loss_of, layout, center, sigma, directions)
        metrics = {**natural_metrics(model, images, labels), **certified_metrics(results[0])}
        return StepResult(layout.unflatten(gradient), {**metrics, "sigma": sigma})

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_certified_arguments(parser)
        group = parser.add_argument_group("RGS (--method rgs, App. F.3)")
        group.add_argument("--sigma-milestones", type=int, nargs="*",
                           help="epochs after which RGS's sigma is multiplied by "
                                "--sigma-factor (default: the --lr-milestones)")
        group.add_argument("--sigma-factor", type=float, default=0.4,
                           help="RGS sigma decay factor (default %(default)s)")

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        milestones = args.sigma_milestones
        if milestones is None:
            milestones = list(getattr(args, "lr_milestones", []) or [])
        options = {**certified_options_from_args(args),
                   "population_size": 2 if args.population_size is None
                   else args.population_size,
                   "sigma": 1e-3 if args.sigma is None else args.sigma,
                   "sigma_milestones": list(milestones), "sigma_factor": args.sigma_factor}
        cls(**options)  # validates
        return options
