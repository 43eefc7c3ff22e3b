"""Training schedules: the eps ramp, step decays of lr and sigma (App. F.1–F.3).

**Eps ramp** (Shi et al., 2021, "Fast certified robust training with short warmup"; their
``SmoothedScheduler``, after DeepMind's IBP code). With steps counted from 0 over the whole
run, s₀ = start_epoch · S, s₁ = (start_epoch + length) · S (S = steps per epoch) and the
switch point s_m = s₀ + ⌊(s₁ − s₀) · mid⌋:

    eps(s) = 0                                             s ≤ s₀
    eps(s) = α (s − s₀)^β                                  s₀ < s < s_m
    eps(s) = min(eps_m + (eps* − eps_m)(s − s_m)/(s₁ − s_m), eps*)      s ≥ s_m

with eps_m = α (s_m − s₀)^β and α chosen so the slope of the polynomial at s_m equals the
slope of the linear piece:  α = eps* / ((s₁ − s_m) β t + (s_m − s₀) t),  t = (s_m − s₀)^(β−1).
Defaults β = 4, mid = 0.25 as in Shi et al. ``kind="linear"`` ramps linearly over the same
steps. ``length = 0`` means no ramp: eps* from ``start_epoch`` on.

**Step decay**: value = base · factor^(number of milestones ≤ epoch) — the lr of App. F.1
(×0.2 after epochs 50, 60 on MNIST) and F.2 (PGPE: ×0.4 after 110, 130), and RGS's sigma,
"decayed by a factor of 0.4 at the same training steps as the learning rate" (App. F.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EpsilonRamp:
    """eps as a function of the global step (0-based); see the module docstring."""

    target: float
    start_epoch: int = 0
    length_epochs: int = 0
    kind: str = "smoothed"
    exponent: float = 4.0
    mid: float = 0.25

    def __post_init__(self) -> None:
        if self.kind not in ("smoothed", "linear"):
            raise ValueError(f"eps ramp kind must be 'smoothed' or 'linear', got {self.kind!r}")
        if self.target < 0 or self.start_epoch < 0 or self.length_epochs < 0:
            raise ValueError("eps target, start epoch and ramp length must be non-negative")
        if self.kind == "smoothed" and (self.exponent < 2 or not 0 <= self.mid <= 1):
            raise ValueError("smoothed ramp needs exponent ≥ 2 and 0 ≤ mid ≤ 1 (Shi et al.)")

    def __call__(self, step: int, steps_per_epoch: int) -> float:
        start = self.start_epoch * steps_per_epoch
        end = (self.start_epoch + self.length_epochs) * steps_per_epoch
        if end <= start:
            return self.target if step >= start else 0.0
        if step <= start:
            return 0.0
        if step >= end:
            return self.target
        if self.kind == "linear":
            return self.target * (step - start) / (end - start)
        return self._smoothed(step, start, end)

    def _smoothed(self, step: int, start: int, end: int) -> float:
        beta = self.exponent
        mid = int((end - start) * self.mid) + start
        if mid == start:  # a ramp too short for a polynomial part is simply linear
            return self.target * (step - start) / (end - start)
        t = (mid - start) ** (beta - 1.0)
        alpha = self.target / ((end - mid) * beta * t + (mid - start) * t)
        mid_value = alpha * (mid - start) ** beta
        if step < mid:
            return alpha * float(step - start) ** beta
        return min(mid_value + (self.target - mid_value) * (step - mid) / (end - mid),
                   self.target)

    def final_step(self, steps_per_epoch: int) -> int:
        """The first step at which eps has reached its target."""
        return (self.start_epoch + self.length_epochs) * steps_per_epoch

    def options(self) -> dict[str, float | int | str]:
        """JSON-serialisable fields (stored in run configurations, so resume rebuilds it)."""
        return {"kind": self.kind, "start_epoch": self.start_epoch,
                "length_epochs": self.length_epochs, "exponent": self.exponent,
                "mid": self.mid}


@dataclass(frozen=True)
class StepDecay:
    """base · factor^(#milestones ≤ epoch); ``epoch`` may be fractional (epoch + step/S)."""

    base: float
    milestones: Sequence[int] = field(default_factory=tuple)
    factor: float = 1.0

    def __call__(self, epoch: float) -> float:
        passed = sum(1 for milestone in self.milestones if epoch >= milestone)
        return self.base * self.factor ** passed
