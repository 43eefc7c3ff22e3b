"""Adversarial attacks: l∞ PGD for training and for evaluating empirical robustness."""

from nobound.attack.evaluation import RobustnessReport, evaluate_robustness, predict
from nobound.attack.objectives import cross_entropy_objective, margin_objective
from nobound.attack.pgd import (
    EVALUATION_ATTACK,
    TRAINING_ATTACK,
    AttackResult,
    PGDConfig,
    attack_box,
    pgd_attack,
    step_size,
)

__all__ = [
    "EVALUATION_ATTACK", "TRAINING_ATTACK", "AttackResult", "PGDConfig", "RobustnessReport",
    "attack_box", "cross_entropy_objective", "evaluate_robustness", "margin_objective",
    "pgd_attack", "predict", "step_size",
]
