"""GRAD: standard certified training, back-propagating through the bound (App. F.1).

Every relaxation is written with the autodiff's operations, so the robust loss of
:mod:`nobound.training.certified_loss` is a differentiable function of θ (IBP, HBox,
CROWN-IBP, DeepPoly, and alpha-CROWN with its optimised slopes held fixed in the final
pass). One step:

    eps ← ramp(step);  g = ∇_θ L(θ; eps);  g ← g · min(1, c / ‖g‖₂);  θ ← Adam(θ, g)

with Adam at lr 5·10⁻⁵ decayed ×0.2 after epochs 50 and 60 (MNIST), gradient clipping at
c = 10 (Shi et al., 2021) and the IBP initialisation — the settings of
:mod:`nobound.training.presets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nobound.backend import unwrap
from nobound.nn.module import Module
from nobound.training.certified_loss import CertifiedLoss, CertifiedObjective
from nobound.training.optim import Optimizer, clip_by_global_norm
from nobound.training.schedules import EpsilonRamp, Progress, StepDecay


class GradMethod:
    """Certified training with exact gradients of the bound loss."""

    name = "grad"

    def __init__(self, model: Module, objective: CertifiedObjective, optimizer: Optimizer,
                 eps_schedule: EpsilonRamp, lr_schedule: StepDecay,
                 clip_norm: float = 10.0) -> None:
        self.model, self.objective, self.optimizer = model, objective, optimizer
        self.eps_schedule, self.lr_schedule, self.clip_norm = eps_schedule, lr_schedule, clip_norm

    def prepare(self, progress: Progress) -> float:
        """Set this step's learning rate; return its eps."""
        self.optimizer.lr = self.lr_schedule(progress.epoch)
        return self.eps_schedule(progress.global_step, progress.steps_per_epoch)

    def step(self, x: Any, targets: Any, progress: Progress) -> dict[str, float]:
        eps = self.prepare(progress)
        self.optimizer.zero_grad()
        result = self.objective(self.model, x, targets, eps)
        result.loss.backward()
        grads = self.optimizer.gradients()
        norm = clip_by_global_norm(grads, self.clip_norm)
        self.optimizer.step(grads)
        self.optimizer.zero_grad()
        return step_metrics(result, eps=eps, lr=self.optimizer.lr, grad_norm=norm)

    def state_dict(self) -> dict[str, Any]:
        return {f"optimizer/{k}": v for k, v in self.optimizer.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        prefix = "optimizer/"
        self.optimizer.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                        if k.startswith(prefix)})


def step_metrics(result: CertifiedLoss, **extra: float) -> dict[str, float]:
    """Scalars for the log: member averages when ``result`` covers a population."""
    def scalar(value: Any) -> float:
        return float(unwrap(value).mean())

    metrics = {"loss": scalar(result.loss), "robust_loss": scalar(result.robust_loss),
               "natural_loss": scalar(result.natural_loss),
               "certified_accuracy": scalar(result.certified_accuracy),
               "natural_accuracy": scalar(result.natural_accuracy)}
    metrics.update({k: float(v) for k, v in extra.items()})
    return metrics
