"""GRAD: standard certified training, back-propagating through the bound (App. F.1).

Every relaxation is written with the autodiff's operations, so the robust loss of
:mod:`nobound.training.certified_loss` is a differentiable function of θ (IBP, HBox,
CROWN-IBP, DeepPoly, and alpha-CROWN with its optimised slopes held fixed in the final
pass). One step of the trainer with this method is

    eps ← ramp(step);  g = ∇_θ L(θ; eps);  g ← g · min(1, c / ‖g‖₂);  θ ← Adam(θ, g)

(paper: Adam, lr 5·10⁻⁵ ×0.2 after epochs 50, 60 on MNIST; clipping c = 10; IBP
initialisation — the ``paper-*`` presets). This module also holds what the three certified
methods (GRAD, RGS, PGPE) share: their loss options and command-line flags.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from typing import Any

from nobound.autodiff import no_grad
from nobound.autodiff.tensor import Tensor
from nobound.backend import unwrap
from nobound.nn.module import Module
from nobound.training.certified_loss import RELAXATIONS, CertifiedLoss, CertifiedObjective
from nobound.training.losses import accuracy, cross_entropy
from nobound.training.method import BackpropMethod, StepContext


def make_objective(relaxation: str, robust_weight: float, l1: float,
                   bound_options: Mapping[str, Any] | None) -> CertifiedObjective:
    return CertifiedObjective(relaxation=relaxation, robust_weight=robust_weight,
                              l1_weight=l1, bound_options=tuple(sorted(
                                  (bound_options or {}).items())))


def objective_options(objective: CertifiedObjective) -> dict[str, Any]:
    """The JSON-serialisable constructor options that rebuild ``objective``."""
    return {"relaxation": objective.relaxation, "robust_weight": objective.robust_weight,
            "l1": objective.l1_weight, "bound_options": dict(objective.bound_options)}


def certified_metrics(result: CertifiedLoss) -> dict[str, float]:
    """Batch metrics for the log (population members averaged): natural ``accuracy``,
    ``certified_accuracy`` (every margin lower bound > 0), and the loss parts computed."""
    def mean(value: Any) -> float:
        return float(unwrap(value).mean())

    metrics = {"loss": mean(result.loss), "robust_loss": mean(result.robust_loss),
               "certified_accuracy": mean(result.certified_accuracy)}
    if result.natural_loss is not None:
        metrics["natural_loss"] = mean(result.natural_loss)
        metrics["accuracy"] = mean(result.natural_accuracy)
    return metrics


def weighted_metrics(parts: Sequence[tuple[float, Mapping[str, float]]]) -> dict[str, float]:
    """Σ_k w_k m_k / Σ_k w_k for every key of the metrics m_k of parts weighted by w_k (e.g.
    population chunks by their member counts). ``math.fsum`` is exactly rounded, so the
    order in which worker threads produced the parts does not change the result."""
    total = math.fsum(weight for weight, _ in parts)
    return {key: math.fsum(weight * metrics[key] for weight, metrics in parts) / total
            for key in parts[0][1]}


def natural_metrics(model: Module, images: Any, labels: Any) -> dict[str, float]:
    """Natural loss and accuracy of the model's own parameters (the GLS centre θ)."""
    with no_grad():
        logits = model(Tensor(images))
        return {"natural_loss": float(cross_entropy(logits, labels).data),
                "accuracy": accuracy(logits, labels)}


def add_certified_arguments(parser: argparse.ArgumentParser) -> None:
    """The loss flags of every certified method (added once, whichever method comes first)."""
    if "--relaxation" in parser._option_string_actions:
        return
    group = parser.add_argument_group("certified training (--method grad, rgs, pgpe)")
    group.add_argument("--relaxation", default="ibp", choices=RELAXATIONS,
                       help="bound of the robust loss (default %(default)s)")
    group.add_argument("--robust-weight", type=float, default=1.0,
                       help="w in (1 − w)·CE_nat + w·CE_rob (default %(default)s)")
    group.add_argument("--l1", type=float, default=0.0,
                       help="L1 regularisation of the weights (default %(default)s)")
    group.add_argument("--alpha-steps", type=int,
                       help="alpha-CROWN slope optimisation steps inside the loss "
                            "(App. F.2: 1)")
    group.add_argument("--alpha-step-size", type=float,
                       help="alpha-CROWN slope step size (App. F.2: 0.5)")
    group.add_argument("--alpha-init",
                       help="alpha-CROWN initial slopes: 'deeppoly' or a number "
                            "(App. F.2: 0.5)")
    group.add_argument("--population-size", type=int,
                       help="GLS: perturbed networks per step (default RGS 2, PGPE 256)")
    group.add_argument("--sigma", type=float,
                       help="GLS: standard deviation of the parameter noise — RGS's fixed "
                            "(decayed) value, PGPE's initial one (default 1e-3)")


def certified_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    bound_options = {}
    if getattr(args, "alpha_steps", None) is not None:
        bound_options["alpha_steps"] = int(args.alpha_steps)
    if getattr(args, "alpha_step_size", None) is not None:
        bound_options["alpha_step_size"] = float(args.alpha_step_size)
    alpha_init = getattr(args, "alpha_init", None)
    if alpha_init is not None:
        bound_options["alpha_init"] = alpha_init if alpha_init == "deeppoly" \
            else float(alpha_init)
    options = {"relaxation": args.relaxation, "robust_weight": args.robust_weight,
               "l1": args.l1, "bound_options": bound_options}
    make_objective(**options)  # validates
    return options


class GradTraining(BackpropMethod):
    """Certified training with exact gradients of the bound loss at the context's eps."""

    name = "grad"

    def __init__(self, relaxation: str = "ibp", robust_weight: float = 1.0, l1: float = 0.0,
                 bound_options: Mapping[str, Any] | None = None) -> None:
        self.objective = make_objective(relaxation, robust_weight, l1, bound_options)

    def options(self) -> dict[str, Any]:
        return objective_options(self.objective)

    def loss(self, model: Module, images: Any, labels: Any, context: StepContext,
             params: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        result = self.objective(model, images, labels, context.eps, params=params,
                                plan=context.plan.bounds)
        metrics = certified_metrics(result)
        del metrics["loss"]
        return result.loss, metrics

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_certified_arguments(parser)

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        return certified_options_from_args(args)
