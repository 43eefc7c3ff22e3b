"""Losses on points and on bounds (paper §2.1 and App. A).

Cross-entropy, written as in the paper:  L_CE(y, t) = ln(1 + Σ_{i≠t} exp(y_i − y_t))
= logsumexp(y) − y_t. The robust loss plugs an upper bound ȳ^Δ on the logit differences
y^Δ = y − y_t into the same formula: since ȳ^Δ_t = 0,
L_CE,rob = ln(1 + Σ_{i≠t} exp(ȳ^Δ_i)) = logsumexp([0, ȳ^Δ_{i≠t}]).
"""

from __future__ import annotations

from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import unwrap


def cross_entropy(logits: Tensor, targets: Any, reduction: str = "mean") -> Tensor:
    """Mean (or per-sample, ``reduction="none"``) cross-entropy over the last axis.

    ``logits`` is (..., B, classes) — a leading population axis is allowed — and
    ``targets`` (B,) integer labels.
    """
    xp = logits.xp
    targets = xp.asarray(unwrap(targets))
    index = xp.broadcast_to(targets.reshape(-1, 1), logits.shape[:-1] + (1,))
    target_logit = ops.gather(logits, index, axis=-1)
    losses = ops.logsumexp(logits, axis=-1) - ops.reshape(target_logit, logits.shape[:-1])
    return _reduce(losses, reduction)


def robust_cross_entropy(margin_upper: Tensor, reduction: str = "mean") -> Tensor:
    """L_CE(ȳ^Δ, t) from upper bounds ``margin_upper`` (…, B, K) on y_j − y_t, j ≠ t.

    A zero column stands for the target's own difference y_t − y_t = 0.
    """
    zeros = Tensor(margin_upper.xp.zeros(margin_upper.shape[:-1] + (1,),
                                         dtype=margin_upper.dtype))
    losses = ops.logsumexp(ops.concatenate([zeros, margin_upper], axis=-1), axis=-1)
    return _reduce(losses, reduction)


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return losses
    if reduction == "mean":
        return ops.mean(losses, axis=-1)
    if reduction == "sum":
        return ops.sum(losses, axis=-1)
    raise ValueError(f"unknown reduction {reduction!r}")


def accuracy(logits: Any, targets: Any) -> float:
    """Fraction of rows whose arg-max equals the target."""
    data = unwrap(logits)
    targets = unwrap(targets)
    return float((data.argmax(axis=-1) == targets).mean())
