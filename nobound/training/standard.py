"""Standard training: minimise the natural cross-entropy (paper §2.1),

    θ ← θ − η · ∇_θ (1/B) Σᵢ L_CE(f_θ(xᵢ), tᵢ),   L_CE(z, t) = logsumexp(z) − z_t.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nobound.autodiff.tensor import Tensor
from nobound.nn.module import Module
from nobound.training.losses import accuracy, cross_entropy
from nobound.training.method import BackpropMethod, StepContext


class StandardTraining(BackpropMethod):
    """Cross-entropy on the clean batch; no perturbation (eps is ignored)."""

    name = "standard"

    def loss(self, model: Module, images: Any, labels: Any, context: StepContext,
             params: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = model(Tensor(images), params)
        return cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}
