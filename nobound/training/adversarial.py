"""PGD adversarial training (Madry et al., 2018; paper §2.1):

    θ ← θ − η · ∇_θ (1/B) Σᵢ L_CE(f_θ(x'ᵢ), tᵢ),   x'ᵢ ≈ argmax_{x' ∈ B(xᵢ, ε) ∩ [0,1]} L_CE

with x' found by :func:`nobound.attack.pgd_attack` (default: 10 steps, one restart, the
highest-loss iterate). The attack runs in eval mode with detached parameters; the update
then runs the model in train mode on x' (so BatchNorm statistics come from x').
The attack's random start is drawn from the step's counters, so resuming is exact.
With ε = 0 (e.g. the first steps of an eps ramp) this is standard training.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from nobound.attack.pgd import TRAINING_ATTACK, PGDConfig, pgd_attack
from nobound.autodiff.tensor import Tensor
from nobound.nn.module import Module
from nobound.training.losses import accuracy, cross_entropy
from nobound.training.method import BackpropMethod, StepContext


class PGDTraining(BackpropMethod):
    """Cross-entropy on PGD adversarial examples at the context's eps."""

    name = "pgd"

    def __init__(self, steps: int = TRAINING_ATTACK.steps,
                 restarts: int = TRAINING_ATTACK.restarts,
                 step_size: float = TRAINING_ATTACK.step_size,
                 attack_loss: str = TRAINING_ATTACK.loss) -> None:
        self.attack = PGDConfig(steps=steps, restarts=restarts, step_size=step_size,
                                loss=attack_loss, keep="max-loss")

    def options(self) -> dict[str, Any]:
        return {"steps": self.attack.steps, "restarts": self.attack.restarts,
                "step_size": self.attack.step_size, "attack_loss": self.attack.loss}

    def loss(self, model: Module, images: Any, labels: Any, context: StepContext,
             params: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        if context.eps > 0:
            images = pgd_attack(model, images, labels, context.eps, self.attack,
                                seed=context.seed, counters=(context.epoch, context.step),
                                params=params).adversarial
        logits = model(Tensor(images), params)
        return cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("PGD training (--method pgd)")
        group.add_argument("--attack-steps", type=int, default=TRAINING_ATTACK.steps,
                           help="PGD steps per training batch (default %(default)s)")
        group.add_argument("--attack-restarts", type=int, default=TRAINING_ATTACK.restarts,
                           help="PGD restarts per training batch (default %(default)s)")
        group.add_argument("--attack-step-size", type=float,
                           default=TRAINING_ATTACK.step_size,
                           help="initial PGD step, relative to the box half-width "
                                "(default %(default)s)")

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        options = {"steps": args.attack_steps, "restarts": args.attack_restarts,
                   "step_size": args.attack_step_size}
        PGDConfig(**options)  # validates
        return options
