"""ClipUp (Toklu, Liskowski & Srivastava, PPSN 2020), the default PGPE optimiser of evotorch.

With the gradient g of the whole parameter vector (all named parameters as one vector):

    v ← clip(μ v + η g / ‖g‖₂,  v_max),      θ ← θ − v,
    clip(u, c) = u · min(1, c / ‖u‖₂),

i.e. a normalised gradient step of length η (the step size, "learning rate") added to a
momentum μ velocity whose norm is capped at the maximum speed v_max. The step length
never depends on the gradient's scale, which suits PGPE's estimates whose magnitude varies
with sigma and the fitness shaping. evotorch's defaults: μ = 0.9, v_max = 2 η.

Descent form: evotorch ascends a fitness; here the gradient is of a loss and θ moves
against it, which is the same update with the sign of the fitness flipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nobound.autodiff.tensor import Tensor
from nobound.training.optim import Optimizer, global_norm


class ClipUp(Optimizer):
    """ClipUp on named parameters; ``lr`` is the step size η."""

    def __init__(self, params: Mapping[str, Tensor], lr: float, momentum: float = 0.9,
                 max_speed: float | None = None) -> None:
        super().__init__(params, lr)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"ClipUp momentum must lie in [0, 1], got {momentum}")
        self.momentum = momentum
        self.fixed_max_speed = max_speed

    @property
    def max_speed(self) -> float:
        """The given maximum speed, else 2 × the *current* lr (so lr decays slow it too)."""
        return 2.0 * self.lr if self.fixed_max_speed is None else self.fixed_max_speed

    def step(self, grads: Mapping[str, Any] | None = None) -> None:
        grads = self.gradients() if grads is None else grads
        self.step_count += 1
        norm = global_norm(grads)
        scale = self.lr / norm if norm > 0 else 0.0
        velocities = {}
        for name, p in self.params.items():
            velocity = self.state.get(f"{name}/velocity")
            push = scale * grads[name].astype(p.dtype, copy=False)
            velocities[name] = push if velocity is None else self.momentum * velocity + push
        speed = global_norm(velocities)
        if speed > self.max_speed:
            ratio = self.max_speed / speed
            velocities = {name: v * ratio for name, v in velocities.items()}
        for name, p in self.params.items():
            self.state[f"{name}/velocity"] = velocities[name]
            p.data -= velocities[name].astype(p.dtype, copy=False)


