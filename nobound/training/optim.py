"""Optimisers written out by hand: SGD with momentum and Adam, plus gradient clipping.

Each optimiser updates named parameters in place from gradients it is given — the
``.grad`` of the parameters for GRAD training, or an estimated gradient for RGS/PGPE — so
the same update rule serves every training method. State is a dict of arrays under
stable names so checkpoints can save and restore it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nobound.autodiff.tensor import Tensor
from nobound.backend import get_array_module, to_numpy


def global_norm(grads: Mapping[str, Any]) -> float:
    """‖g‖₂ over all parameters, as one vector."""
    total = 0.0
    for g in grads.values():
        total += float((g * g).sum())
    return math.sqrt(total)


def clip_by_global_norm(grads: dict[str, Any], max_norm: float) -> float:
    """Scale all gradients by min(1, max_norm / ‖g‖₂) in place; returns the norm before."""
    norm = global_norm(grads)
    if max_norm > 0 and norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for name in grads:
            grads[name] = grads[name] * scale
    return norm


class Optimizer:
    """Base class: holds named parameters, a learning rate and per-parameter state."""

    def __init__(self, params: Mapping[str, Tensor], lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.params = dict(params)
        self.lr = lr
        self.step_count = 0
        self.state: dict[str, Any] = {}

    def gradients(self) -> dict[str, Any]:
        """The parameters' ``.grad`` arrays (zeros where none was computed)."""
        grads = {}
        for name, p in self.params.items():
            grads[name] = p.grad if p.grad is not None else p.xp.zeros_like(p.data)
        return grads

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def step(self, grads: Mapping[str, Any] | None = None) -> None:
        """One update from ``grads`` (default: the parameters' ``.grad``)."""
        grads = self.gradients() if grads is None else grads
        self.step_count += 1
        for name, p in self.params.items():
            p.data -= self.direction(name, grads[name].astype(p.dtype, copy=False), p)

    def direction(self, name: str, grad: Any, param: Tensor) -> Any:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        out = {f"state/{k}": to_numpy(v) for k, v in self.state.items()}
        out["lr"] = self.lr
        out["step_count"] = self.step_count
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.lr = float(state["lr"])
        self.step_count = int(state["step_count"])
        xp = get_array_module(next(iter(self.params.values())).data)
        self.state = {k[len("state/"):]: xp.asarray(v) for k, v in state.items()
                      if k.startswith("state/")}


class SGD(Optimizer):
    """v ← μ v + g;  θ ← θ − η v  (PyTorch's SGD with momentum μ, no dampening)."""

    def __init__(self, params: Mapping[str, Tensor], lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        self.momentum, self.weight_decay = momentum, weight_decay

    def direction(self, name: str, grad: Any, param: Tensor) -> Any:
        if self.weight_decay:
            grad = grad + self.weight_decay * param.data
        if self.momentum:
            velocity = self.state.get(f"{name}/velocity")
            velocity = grad.copy() if velocity is None else self.momentum * velocity + grad
            self.state[f"{name}/velocity"] = velocity
            grad = velocity
        return self.lr * grad


class Adam(Optimizer):
    """Kingma & Ba (2015):  m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,
    θ ← θ − η · m̂ / (√v̂ + ε)  with  m̂ = m/(1−β₁ᵗ),  v̂ = v/(1−β₂ᵗ)."""

    def __init__(self, params: Mapping[str, Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps = eps

    def direction(self, name: str, grad: Any, param: Tensor) -> Any:
        xp = param.xp
        m = self.state.get(f"{name}/m")
        v = self.state.get(f"{name}/v")
        m = (1 - self.beta1) * grad if m is None else self.beta1 * m + (1 - self.beta1) * grad
        v = (1 - self.beta2) * grad * grad if v is None else \
            self.beta2 * v + (1 - self.beta2) * grad * grad
        self.state[f"{name}/m"], self.state[f"{name}/v"] = m, v
        t = self.step_count
        m_hat = m / (1 - self.beta1 ** t)
        v_hat = v / (1 - self.beta2 ** t)
        return (self.lr * m_hat / (xp.sqrt(v_hat) + self.eps)).astype(param.dtype)


class MultiStepLR:
    """η = η₀ · γ^(number of milestones ≤ epoch): decay by ``factor`` at each milestone."""

    def __init__(self, base_lr: float, milestones: list[int], factor: float) -> None:
        self.base_lr, self.milestones, self.factor = base_lr, sorted(milestones), factor

    def __call__(self, epoch: float) -> float:
        passed = sum(1 for m in self.milestones if epoch >= m)
        return self.base_lr * self.factor ** passed


OPTIMIZERS = {"adam": Adam, "sgd": SGD}
