"""The per-sample losses an attack maximises.

* cross-entropy  L_CE(z, t) = logsumexp(z) − z_t  (PGD training, Madry et al. 2018);
* margin (Carlini & Wagner 2017)  L_M(z, t) = max_{j≠t} z_j − z_t, positive exactly when
  the input is misclassified (ties aside) — the evaluation attack of CTBench.

Both take logits (B, K) and integer targets (B,) and return a Tensor (B,), so one backward
pass of their sum gives every sample's input gradient at once (samples are independent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import unwrap
from nobound.training.losses import cross_entropy


def cross_entropy_objective(logits: Tensor, targets: Any) -> Tensor:
    """L_CE(z, t) per sample."""
    return cross_entropy(logits, targets, reduction="none")


def margin_objective(logits: Tensor, targets: Any) -> Tensor:
    """L_M(z, t) = max_{j≠t} z_j − z_t per sample (needs at least two classes)."""
    targets = unwrap(targets)
    xp = logits.xp
    if logits.shape[-1] < 2:
        raise ValueError("the margin loss needs at least two classes")
    is_target = xp.arange(logits.shape[-1])[None, :] == targets[:, None]
    # −inf never wins the max, so the target's own logit is excluded (and gets no gradient
    # through this branch).
    others = ops.where(is_target, xp.asarray(-xp.inf, dtype=logits.dtype), logits)
    target_logit = ops.reshape(ops.gather(logits, targets[:, None], axis=-1), (-1,))
    return ops.max(others, axis=-1) - target_logit


OBJECTIVES: dict[str, Callable[[Tensor, Any], Tensor]] = {
    "cross-entropy": cross_entropy_objective,
    "margin": margin_objective,
}


def get_objective(name: str) -> Callable[[Tensor, Any], Tensor]:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown attack loss {name!r}; choose from {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]
