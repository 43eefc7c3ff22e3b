"""Searching for counterexamples: PGD on a problem's rows, and robustness via nobound.attack.

A problem is violated at x when every row r_i(x) ≤ 0, i.e. when max_i r_i(x) ≤ 0, so the
attack descends that maximum over the box [l, u] with signed steps relative to the box's
half-width (as :mod:`nobound.attack.pgd` does for classification), from the given starts
and random ones:

    x ← clip_[l,u]( x − α_k (u − l)/2 ⊙ sign ∇ₓ max_i r_i(x) ).

Every iterate is replayed by :meth:`VerificationProblem.find_counterexample` (float64), so
only real counterexamples come back. For robustness samples the certifier uses
:func:`nobound.attack.pgd_attack` itself (the evaluation attack of the paper's tables) and
replays its adversarial inputs the same way (:func:`robustness_attack`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import random_stream
from nobound.certify.problem import Counterexample, VerificationProblem


def attack_problem(problem: VerificationProblem, starts: np.ndarray | None = None,
                   steps: int = 50, restarts: int = 3, step_size: float = 0.2,
                   seed: int = 0) -> Counterexample | None:
    """PGD on max_i r_i over the box from ``starts`` (S, *shape) plus ``restarts`` random
    points and the centre; the first float64-replayed violation, or None."""
    if problem.is_empty:
        return None
    rng = random_stream(seed, name="certify-attack")
    lower, upper = problem.lower, problem.upper
    randoms = lower + rng.random((restarts, *problem.input_shape)) * (upper - lower)
    points = [((lower + upper) / 2)[None], randoms]
    if starts is not None and len(starts):
        points.insert(0, np.asarray(starts, np.float64).reshape(-1, *problem.input_shape))
    point = np.concatenate(points)
    half_width = (upper - lower) / 2
    spec = Tensor(problem.spec.T)
    offset = Tensor(problem.offset)
    for step in range(steps + 1):
        found = problem.find_counterexample(point)
        if found is not None or step == steps:
            return found
        x = Tensor(point, requires_grad=True)
        rows = ops.matmul(problem.model(x), spec) + offset
        ops.max(rows, axis=-1).sum().backward()
        alpha = step_size * (0.1 if step >= steps // 2 else 1.0)
        point = np.clip(point - alpha * half_width * np.sign(x.grad), lower, upper)
    return None


def robustness_attack(model: Any, x: np.ndarray, label: int, eps: float,
                      problems: list[VerificationProblem], steps: int = 200,
                      restarts: int = 5, seed: int = 0) -> Counterexample | None:
    """Run the evaluation PGD of :mod:`nobound.attack` on (x, label) and replay its
    adversarial input against each problem in float64."""
    from nobound.attack import PGDConfig, pgd_attack

    config = PGDConfig(steps=steps, restarts=restarts, loss="margin",
                       keep="first-adversarial")
    batch = np.asarray(x, dtype=np.float64)[None]
    result = pgd_attack(model, batch, np.array([label]), eps, config, seed=seed)
    candidate = np.asarray(result.adversarial)
    for problem in problems:
        found = problem.find_counterexample(candidate)
        if found is not None:
            return found
    return None
