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

On a multi-core host the members can instead be split among ``workers`` threads, one
batched pass (forward and backward) per chunk of members, as PGPE evaluates its population
(:func:`nobound.training.execution_plan.population_chunks`). Each chunk has its own leaf
tensors and graph, and the grad mode is per thread, so the chunks never share state; by the
same argument as above each chunk's backward gives its members' own gradients. This is
what fills the second core when BLAS runs on one thread (the default is cores / BLAS
threads, :func:`~nobound.training.execution_plan.default_workers`); the workers are the
run's :class:`~nobound.training.execution_plan.ExecutionPlan`'s (``member_workers``, handed
down in the step's context), which keeps one for a train-mode BatchNorm.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.backend import get_array_module, to_numpy
from nobound.nn.module import Module
from nobound.training.execution_plan import DEFAULT_PLAN, ExecutionPlan, population_chunks
from nobound.training.grad import (
    add_certified_arguments,
    certified_metrics,
    certified_options_from_args,
    make_objective,
    natural_metrics,
    objective_options,
    weighted_metrics,
)
from nobound.training.method import PopulationBatch, StepContext, StepResult, TrainingMethod
from nobound.training.perturbation import ParameterLayout, standard_normal_directions
from nobound.training.population import PopulationLoss, map_in_order
from nobound.training.schedules import StepDecay


def rgs_gradient(loss_of: PopulationLoss, layout: ParameterLayout, center: Any, sigma: float,
                 directions: Any, workers: int = 1) -> tuple[Any, np.ndarray]:
    """ĝ of eq. 6 and the member losses, from standard-normal ``directions`` (n_ps, d).

    ``loss_of`` maps parameters with a leading population axis (c, *shape) to losses (c,).
    With ``workers`` > 1 the members are split into that many chunks evaluated in threads
    at once (``loss_of`` must then be safe to call concurrently); otherwise one pass.
    """
    members = center[None, :] + sigma * directions
    xp = get_array_module(center)

    def chunk_gradients(chunk: tuple[int, int]) -> tuple[Any, np.ndarray]:
        start, stop = chunk
        params = layout.to_tensors(members[start:stop], requires_grad=True)
        losses = loss_of(params)
        ops.sum(losses).backward()
        grads = {name: p.grad if p.grad is not None else xp.zeros_like(p.data)
                 for name, p in params.items()}
        return (layout.flatten_population(grads),
                to_numpy(losses.data).reshape(stop - start).astype(np.float64))

    parts = map_in_order(chunk_gradients, population_chunks(members.shape[0], workers=workers),
                         workers)
    member_gradients = xp.concatenate([gradients for gradients, _ in parts])
    return member_gradients.mean(axis=0), np.concatenate([losses for _, losses in parts])


class RGSTraining(TrainingMethod):
    """GRAD's step with the gradient replaced by the RGS estimate of eq. 6.

    σ follows a step decay on the fractional epoch: σ₀ · factor^(#milestones passed) — the
    paper decays it ×0.4 at the lr milestones (App. F.3), which is what the command line
    passes when ``--sigma-milestones`` is not given.

    How the members are spread over threads is the run's plan (the step context's
    ``plan.member_workers``); ``workers`` given here overrides it, for a method built
    alone in code (:meth:`ExecutionPlan.with_member_options
    <nobound.training.execution_plan.ExecutionPlan.with_member_options>`).
    """

    name = "rgs"

    def __init__(self, relaxation: str = "deeppoly", robust_weight: float = 1.0,
                 l1: float = 0.0, bound_options: Mapping[str, Any] | None = None,
                 population_size: int = 2, sigma: float = 1e-3,
                 sigma_milestones: Sequence[int] = (), sigma_factor: float = 0.4,
                 workers: int | None = None) -> None:
        if population_size < 1:
            raise ValueError(f"RGS needs a population of at least 1, got {population_size}")
        if workers is not None and workers < 1:
            raise ValueError(f"RGS needs at least 1 worker, got {workers}")
        if sigma < 0 or sigma_factor <= 0:
            raise ValueError("RGS needs sigma ≥ 0 and a positive sigma decay factor")
        self.objective = make_objective(relaxation, robust_weight, l1, bound_options)
        self.population_size = int(population_size)
        self.sigma_schedule = StepDecay(float(sigma), tuple(int(m) for m in sigma_milestones),
                                        float(sigma_factor))
        self.workers = workers  # None: the plan's member_workers

    def options(self) -> dict[str, Any]:
        return {**objective_options(self.objective), "population_size": self.population_size,
                "sigma": self.sigma_schedule.base,
                "sigma_milestones": list(self.sigma_schedule.milestones),
                "sigma_factor": self.sigma_schedule.factor, "workers": self.workers}

    def compute_step(self, model: Module, images: Any, labels: Any,
                     context: StepContext) -> StepResult:
        params = dict(model.named_parameters())
        layout = ParameterLayout.of(params)
        center = layout.flatten(params)
        sigma = self.sigma_schedule(context.progress)
        bounds_plan = context.plan.bounds
        directions = standard_normal_directions(
            context.seed, context.epoch, context.step, range(self.population_size),
            layout.size, name="rgs-noise", xp=get_array_module(center), dtype=center.dtype)
        parts: list[tuple[int, dict[str, float]]] = []  # (members, their metrics) per chunk

        def loss_of(member_params: dict) -> Any:
            result = self.objective(model, images, labels, context.eps, params=member_params,
                                    natural_metrics=self.objective.robust_weight < 1,
                                    plan=bounds_plan)
            parts.append((result.loss.shape[0], certified_metrics(result)))
            return result.loss

        gradient = self.smoothed_gradient(loss_of, layout, center, sigma, directions,
                                          PopulationBatch(model, images, labels, context),
                                          parts)
        metrics = weighted_metrics(parts)
        # natural loss and accuracy are reported at the centre θ, as PGPE does
        metrics.update(natural_metrics(model, images, labels), sigma=sigma)
        return StepResult(layout.unflatten(gradient), metrics)

    def smoothed_gradient(self, loss_of: PopulationLoss, layout: ParameterLayout,
                          center: Any, sigma: float, directions: Any,
                          batch: PopulationBatch,
                          parts: list[tuple[int, dict[str, float]]]) -> Any:
        """ĝ of eq. 6 on this process's threads (``loss_of`` records each chunk's metrics
        in ``parts``); nobound.distributed sums chunk gradients on Ray workers instead."""
        return rgs_gradient(loss_of, layout, center, sigma, directions,
                            self.workers_for(batch.model, center, batch.context.plan))[0]

    def workers_for(self, model: Module, center: Any, plan: ExecutionPlan = DEFAULT_PLAN
                    ) -> int:
        """Threads for a step under the run's ``plan``: its member workers (this method's
        ``workers`` if given), never more than the members."""
        return plan.with_member_options(workers=self.workers).member_threads(
            model, get_array_module(center), limit=self.population_size)

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
