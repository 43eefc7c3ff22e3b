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

import math
import time
from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import random_stream
from nobound.certify.problem import Counterexample, VerificationProblem


def attack_problem(problem: VerificationProblem, starts: np.ndarray | None = None,
                   steps: int = 50, restarts: int = 3, step_size: float = 0.2,
                   seed: int = 0, deadline: float = math.inf) -> Counterexample | None:
    """PGD on max_i r_i over the box from ``starts`` (S, *shape) plus ``restarts`` random
    points and the centre; the first float64-replayed violation, or None. No step is
    taken after ``deadline`` (a ``time.perf_counter`` reading): the points reached are
    still replayed, then the attack gives up."""
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
        if found is not None or step == steps or time.perf_counter() > deadline:
            return found
        x = Tensor(point, requires_grad=True)
        rows = ops.matmul(problem.model(x), spec) + offset
        ops.max(rows, axis=-1).sum().backward()
        alpha = step_size * (0.1 if step >= steps // 2 else 1.0)
        point = np.clip(point - alpha * half_width * np.sign(x.grad), lower, upper)
    return None


def attack_problems(problems: list[VerificationProblem], steps: int = 50, restarts: int = 3,
                    step_size: float = 0.2, seed: int = 0, deadline: float = math.inf
                    ) -> tuple[int, Counterexample] | None:
    """:func:`attack_problem` on several problems of one model at once: the problems that
    share a box are attacked in one batch (each from the centre and the same ``restarts``
    random points, each point descending its own problem's max_i r_i), one forward and one
    backward pass per step for all of them. (index in ``problems``, counterexample) of the
    first replayed violation, or None. A point is handed to ``find_counterexample`` (which
    decides, as in :func:`attack_problem`) when its rows are all ≤ a small slack in the
    batched pass, so that batched rounding cannot hide a violation. ``deadline``: as in
    :func:`attack_problem`, for every group."""
    groups: dict[bytes, list[int]] = {}
    for index, problem in enumerate(problems):
        if not problem.is_empty:
            key = problem.lower.tobytes() + problem.upper.tobytes()
            groups.setdefault(key, []).append(index)
    for members in groups.values():
        found = _attack_group([problems[i] for i in members], steps, restarts, step_size,
                              seed, deadline)
        if found is not None:
            return members[found[0]], found[1]
    return None


def _attack_group(problems: list[VerificationProblem], steps: int, restarts: int,
                  step_size: float, seed: int, deadline: float
                  ) -> tuple[int, Counterexample] | None:
    first = problems[0]
    rng = random_stream(seed, name="certify-attack")
    lower, upper = first.lower, first.upper
    randoms = lower + rng.random((restarts, *first.input_shape)) * (upper - lower)
    starts = np.concatenate([((lower + upper) / 2)[None], randoms])
    count, per = len(problems), len(starts)
    point = np.concatenate([starts] * count)  # problem p owns points p*per … (p+1)*per − 1
    rows = max(p.num_rows for p in problems)
    # (outputs, rows) per problem, padded with rows that are never the maximum
    spec = np.zeros((count, first.spec.shape[1], rows))
    offset = np.full((count, rows), -1e300)
    for n, problem in enumerate(problems):
        spec[n, :, :problem.num_rows] = problem.spec.T
        offset[n, :problem.num_rows] = problem.offset
    spec_points = Tensor(np.repeat(spec, per, axis=0))
    offset_points = Tensor(np.repeat(offset, per, axis=0))
    half_width = (upper - lower) / 2
    for step in range(steps + 1):
        x = Tensor(point, requires_grad=step < steps)
        outputs = problems[0].model(x)
        values = ops.matmul(outputs.reshape(count * per, 1, -1), spec_points).reshape(
            count * per, rows) + offset_points
        worst = values.data.max(axis=1)
        slack = 1e-9 * (1.0 + np.abs(outputs.data).max(axis=1))
        for candidate in np.flatnonzero(worst <= slack):
            n = int(candidate) // per
            found = problems[n].find_counterexample(point[candidate][None])
            if found is not None:
                return n, found
        if step == steps or time.perf_counter() > deadline:
            return None
        ops.max(values, axis=-1).sum().backward()
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
