"""Natural and adversarial (PGD) accuracy of a model on a labelled set.

natural accuracy      = (1/n) Σᵢ [argmax f(xᵢ) = tᵢ]
adversarial accuracy  = (1/n) Σᵢ [argmax f(xᵢ) = tᵢ  and  PGD finds no x' ∈ B(xᵢ) with
                                   argmax f(x') ≠ tᵢ]

Only correctly classified samples are attacked (the others count as non-robust anyway).
The adversarial accuracy is an *upper* bound on the true robust accuracy: an attack can
miss adversarial examples, a certifier (:mod:`nobound.certify`) gives the lower bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nobound.attack.pgd import EVALUATION_ATTACK, PGDConfig, pgd_attack
from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import get_array_module, to_numpy
from nobound.nn.module import Module


@dataclass
class RobustnessReport:
    """Per-sample outcomes (host bool arrays) and their means."""

    eps: float
    natural_correct: np.ndarray
    adversarial_correct: np.ndarray

    @property
    def n(self) -> int:
        return int(self.natural_correct.size)

    @property
    def natural_accuracy(self) -> float:
        return float(self.natural_correct.mean()) if self.n else 0.0

    @property
    def adversarial_accuracy(self) -> float:
        return float(self.adversarial_correct.mean()) if self.n else 0.0

    def summary(self) -> dict[str, Any]:
        return {"n": self.n, "eps": self.eps, "natural_accuracy": self.natural_accuracy,
                "adversarial_accuracy": self.adversarial_accuracy}


def predict(model: Module, images: Any, batch_size: int = 512) -> np.ndarray:
    """Arg-max predictions (host int64 array) in eval mode, batch by batch."""
    was_training = model.training
    model.eval()
    out = []
    try:
        with no_grad():
            for start in range(0, len(images), batch_size):
                logits = model(Tensor(images[start:start + batch_size]))
                out.append(to_numpy(logits.data.argmax(axis=-1)))
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def evaluate_robustness(model: Module, images: Any, labels: Any, eps: float, *,
                        config: PGDConfig = EVALUATION_ATTACK, batch_size: int = 256,
                        seed: int = 0, low: float = 0.0, high: float = 1.0,
                        on_batch: Callable[[int], None] | None = None) -> RobustnessReport:
    """Natural and PGD accuracy on ``images`` (N, C, H, W) in [low, high], ``labels`` (N,).

    Batch ``b`` is attacked with ``counters=(b,)``, so results do not depend on what else
    was evaluated. ``on_batch(n)`` is called after each batch of n samples (progress).
    """
    xp = get_array_module(images)
    natural, robust = [], []
    for index, start in enumerate(range(0, len(images), batch_size)):
        x = images[start:start + batch_size]
        t = labels[start:start + batch_size]
        correct = to_numpy(predict(model, x, batch_size)) == to_numpy(t)
        still_robust = correct.copy()
        if eps > 0 and correct.any():
            attacked = xp.asarray(np.flatnonzero(correct))
            result = pgd_attack(model, x[attacked], t[attacked], eps, config, low=low,
                                high=high, seed=seed, counters=(index,))
            still_robust[np.flatnonzero(correct)] = ~to_numpy(result.success)
        natural.append(correct)
        robust.append(still_robust)
        if on_batch is not None:
            on_batch(len(t))
    empty = np.zeros(0, bool)
    return RobustnessReport(eps, np.concatenate(natural) if natural else empty,
                            np.concatenate(robust) if robust else empty)


def attack_settings(config: PGDConfig) -> dict[str, Any]:
    """The attack's settings as a JSON-friendly dict (for result files)."""
    return asdict(config)
