"""l∞ projected gradient descent (Madry et al., 2018) with CTBench's step-size schedule.

The search region of input x with radius ε, clipped to the valid input range, is the box

    B = [lower, upper],   lower = max(x − ε, low),   upper = min(x + ε, high).

Each restart r starts at a random point and takes signed-gradient ascent steps on a
per-sample loss L (:mod:`nobound.attack.objectives`), projecting back onto B:

    x⁰ = clip_B(x + (u − ½) ⊙ (upper − lower)),          u ~ U[0, 1]^d
    xᵏ⁺¹ = clip_B(xᵏ + αₖ · (upper − lower)/2 ⊙ sign(∇ₓ L(xᵏ)))

The step is relative to the box's half-width, as in CTBench's ``adv_whitebox``, and αₖ
follows its schedule (:func:`step_size`): for n ≥ 50 steps α is divided by 10 after 50 %,
80 % and 90 % of the steps; for 20 ≤ n < 50 once after 70 %; below 20 it is multiplied by
0.2 every 10 steps. We use α₀ = 0.2 (CTBench leaves it as a flag).

Two ways to pick the returned point among all iterates xᵏ of all restarts:

* ``keep="first-adversarial"`` (evaluation): the first misclassified iterate; a sample
  stops moving once broken and is no longer evaluated, and restarts stop when every
  sample is broken. ``success`` says whether any misclassified iterate was found.
* ``keep="max-loss"`` (training): the iterate with the largest loss.

The model runs in eval mode (BatchNorm uses running statistics, so samples stay
independent and nothing is updated) with its parameters detached: the attack never
touches parameter gradients. Random starts come from
``random_stream(seed, *counters, restart, name="pgd-start")`` so an attack inside a
training step is reproducible from the step's counters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nobound.attack.objectives import get_objective
from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import get_array_module, random_stream, unwrap
from nobound.nn.module import Module


@dataclass(frozen=True)
class PGDConfig:
    """How to attack: number of steps and restarts, initial relative step, loss, selection."""

    steps: int = 200
    restarts: int = 5
    step_size: float = 0.2
    loss: str = "margin"
    keep: str = "first-adversarial"
    random_start: bool = True

    def __post_init__(self) -> None:
        if self.steps < 0 or self.restarts < 1:
            raise ValueError(f"PGD needs steps ≥ 0 and restarts ≥ 1, got {self.steps}, "
                             f"{self.restarts}")
        if self.step_size <= 0:
            raise ValueError(f"PGD step size must be positive, got {self.step_size}")
        if self.keep not in ("first-adversarial", "max-loss"):
            raise ValueError(f"keep must be 'first-adversarial' or 'max-loss', got {self.keep!r}")
        get_objective(self.loss)


#: CTBench's evaluation attack: 200 steps, 5 restarts, margin loss.
EVALUATION_ATTACK = PGDConfig(steps=200, restarts=5, step_size=0.2, loss="margin",
                              keep="first-adversarial")
#: PGD training (Madry et al.): 10 steps, one restart, cross-entropy, worst iterate.
TRAINING_ATTACK = PGDConfig(steps=10, restarts=1, step_size=0.2, loss="cross-entropy",
                            keep="max-loss")


@dataclass
class AttackResult:
    """``adversarial`` (B, C, H, W) inside the box; ``success`` (B,) bool: the returned
    point is misclassified; ``loss`` (B,) the attack loss at the returned point."""

    adversarial: Any
    success: Any
    loss: Any


def step_size(step: int, steps: int, initial: float) -> float:
    """αₖ of CTBench's ``step_lr_scheduler`` for an attack of ``steps`` steps."""
    if steps >= 50:
        milestones = [math.ceil(f * steps) for f in (0.5, 0.8, 0.9)]
        return initial * 0.1 ** sum(step >= m for m in milestones)
    if steps >= 20:
        return initial * 0.1 ** (step >= math.ceil(0.7 * steps))
    return initial * 0.2 ** (step // 10)


def attack_box(x: Any, eps: float, low: float = 0.0, high: float = 1.0) -> tuple[Any, Any]:
    """[max(x − ε, low), min(x + ε, high)]; x must lie in [low, high] and ε ≥ 0."""
    xp = get_array_module(x)
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if x.size and (float(x.min()) < low or float(x.max()) > high):
        raise ValueError(f"inputs must lie in the valid range [{low}, {high}]")
    return xp.maximum(x - eps, low), xp.minimum(x + eps, high)


def loss_and_input_gradient(model: Module, params: Mapping[str, Tensor], x: Any,
                            targets: Any, loss: str) -> tuple[Any, Any, Any]:
    """(per-sample loss, logits, ∇ₓ Σ loss) at x, by one forward and one backward pass."""
    point = Tensor(x, requires_grad=True)
    logits = model(point, params)
    per_sample = get_objective(loss)(logits, targets)
    per_sample.sum().backward()
    return per_sample.data, logits.data, point.grad


def pgd_attack(model: Module, x: Any, targets: Any, eps: float,
               config: PGDConfig = EVALUATION_ATTACK, *, low: float = 0.0, high: float = 1.0,
               seed: int = 0, counters: Sequence[int] = (),
               params: Mapping[str, Tensor] | None = None) -> AttackResult:
    """Attack a batch ``x`` (B, C, H, W) with labels ``targets`` (B,); see the module doc.

    ``params`` optionally replaces the model's own parameters (they are detached either way).
    """
    x, targets = unwrap(x), unwrap(targets)
    xp = get_array_module(x)
    lower, upper = attack_box(x, eps, low, high)
    half_width = (upper - lower) / 2
    source = params if params is not None else dict(model.named_parameters())
    constants = {name: Tensor(unwrap(p)) for name, p in source.items()}

    batch = x.shape[0]
    best = x.copy()
    best_loss = xp.full(batch, -xp.inf, dtype=x.dtype)
    success = xp.zeros(batch, dtype=bool)
    first = config.keep == "first-adversarial"
    was_training = model.training
    model.eval()
    try:
        for restart in range(config.restarts):
            active = xp.flatnonzero(~success) if first else xp.arange(batch)
            if active.size == 0:
                break
            point = x[active]
            if config.random_start:
                rng = random_stream(seed, *counters, restart, name="pgd-start", xp=xp)
                noise = rng.random(point.shape, dtype=point.dtype) - point.dtype.type(0.5)
                point = xp.clip(point + noise * (upper[active] - lower[active]),
                                lower[active], upper[active])
            for step in range(config.steps + 1):
                last = step == config.steps
                if last:  # the final iterate is only checked, not moved
                    loss, logits = attack_loss(model, constants, point, targets[active],
                                               config.loss)
                else:
                    loss, logits, grad = loss_and_input_gradient(
                        model, constants, point, targets[active], config.loss)
                is_adversarial = logits.argmax(axis=-1) != targets[active]
                update = is_adversarial if first else loss > best_loss[active]
                chosen = active[update]
                best[chosen] = point[update]
                best_loss[chosen] = loss[update]
                success[chosen] = is_adversarial[update]
                if last:
                    break
                alpha = point.dtype.type(step_size(step, config.steps, config.step_size))
                moved = point + alpha * half_width[active] * xp.sign(grad)
                point = xp.clip(moved, lower[active], upper[active])
                if first:  # broken samples stop; only the others are evaluated further
                    active, point = active[~is_adversarial], point[~is_adversarial]
                    if active.size == 0:
                        break
        if first:  # unbroken samples return x itself: report the loss there
            best_loss, _ = attack_loss(model, constants, best, targets, config.loss)
    finally:
        model.train(was_training)
    return AttackResult(best, success, best_loss)


def attack_loss(model: Module, params: Mapping[str, Tensor], x: Any, targets: Any,
                loss: str) -> tuple[Any, Any]:
    """(per-sample loss, logits) at x, without recording a graph."""
    with no_grad():
        logits = model(Tensor(x), params)
        return get_objective(loss)(logits, targets).data, logits.data
