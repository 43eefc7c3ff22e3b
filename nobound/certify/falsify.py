"""Searching for counterexamples: PGD on a problem's rows, a search of small boxes, and
robustness via nobound.attack.

A problem is violated at x when every row r_i(x) ≤ 0, i.e. when max_i r_i(x) ≤ 0, so the
attack descends that maximum over the box [l, u] with signed steps relative to the box's
half-width (as :mod:`nobound.attack.pgd` does for classification), from the given starts
and random ones:

    x ← clip_[l,u]( x − α_k (u − l)/2 ⊙ sign ∇ₓ max_i r_i(x) ).

Every point that reaches a verdict is replayed by
:meth:`VerificationProblem.find_counterexample` (float64, then the model's own arithmetic),
the one gate of every attack here, so only real counterexamples come back. For robustness
samples the certifier uses :func:`nobound.attack.pgd_attack` itself (the evaluation attack
of the paper's tables) and replays its adversarial inputs the same way
(:func:`robustness_attack`).

**Small boxes** (:func:`search_problems`, run by :func:`attack_problems` when its PGD finds
nothing). On boxes with few inputs — ACAS Xu has 5 — the violating sets of properties that
fail can be thin: on ``ACASXU_run2a_1_5`` / ``prop_2`` the set is about 10⁻³ wide in one
input and 6·10⁻³ in another, and lies on a face of the box (ρ at its lower bound), so it is
about 10⁻⁹ of the box; around it max_i r_i is a sharp valley (two rows cross) while a wide
shallow basin elsewhere has a smaller value than the valley's rim. PGD from the centre and
a few random points falls into the basin; its first steps (0.2 of the half-width) jump
across the valley. A round of the search therefore

1. scores stratified samples of the whole box (a Latin hypercube: one sample in each of S
   equal slices of every input), every second one with each coordinate moved to a bound
   with probability ``SEARCH_FACE`` on each side, because for a piecewise-linear network
   the minimum over the box of a linear piece lies on a vertex of its region, often on the
   box's faces. S = 9^n (about nine levels per input in the joint grid), at least 4096
   and at most 65536: on the five-input boxes of ACAS Xu a quarter of that found the
   thinnest sets in far fewer rounds (docs/certifier.md, "Falsification on small
   boxes");
2. evolves ``SEARCH_ISLANDS`` separate populations per problem (a cross-entropy method:
   each keeps its ``SEARCH_ELITE`` best points and draws children from them with each
   input's spread in the elite as the Gaussian step), seeded by the best samples at least
   ``SEARCH_SEPARATION`` apart (l∞, relative to the box) — one island per basin, so the
   wide basin cannot take them all; the spread shrinks per input as an island closes in,
   which is what a valley that is thin in one input needs (signed steps move every input
   by the same fraction);
3. runs PGD from the ``SEARCH_PGD_STARTS`` best samples and every island's best point,
   each with first steps of 0.1, 0.01 and 0.001 of the half-width, decaying geometrically
   by ``SEARCH_PGD_DECAY`` over ``SEARCH_PGD_STEPS`` steps: one scale for a wide valley, one
   that lands inside a thin one.

All problems of one box share each forward pass (every sample is scored for every
problem, an island's children and a PGD point for their own problem). Each round draws
its numbers from ``random_stream(seed, round)`` alone, so a search is determined by its
seed and a longer search extends a shorter one. The cost is sized by the clock, not by a
guess of the network's cost: points go through the network in chunks of
``SEARCH_CHUNK`` and the deadline is read between chunks and PGD steps, so a network whose
forward pass is dear gets fewer points, not a late answer. Boxes with more than
``SEARCH_MAX_INPUTS`` inputs are not searched: samples of a high-dimensional box say
little and PGD (the first attack) is the tool there. :func:`attack_problems` gives the
search at most ``SEARCH_ROUNDS`` rounds and ``SEARCH_SHARE`` of the time left: properties
that hold pay that share and nothing more (docs/certifier.md, "Falsification on small
boxes").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import random_stream
from nobound.certify.problem import Counterexample, VerificationProblem, group_by_box

# The search of small boxes (search_problems; the module docstring derives the sizes)
SEARCH_MAX_INPUTS = 64      # boxes with more inputs are left to PGD (module docstring)
SEARCH_ROUNDS = 2           # rounds of attack_problems' search, at most
SEARCH_SHARE = 0.07         # of the time left before the deadline, at most
SEARCH_SAMPLES = 65536      # stratified samples per round, at most (half snapped to faces)
SEARCH_LEVELS = 9           # … and at most this many per input to the power of the inputs
SEARCH_MIN_SAMPLES = 4096   # … and at least this many
SEARCH_FACE = 0.15          # probability of a snapped sample's coordinate at each bound
SEARCH_ISLANDS = 16         # separate evolution populations per problem
SEARCH_SEPARATION = 0.2     # least l∞ distance of island seeds, relative to the box
SEARCH_ELITE = 16           # kept points per island
SEARCH_OFFSPRING = 64       # new points per island and generation
SEARCH_GENERATIONS = 30
SEARCH_PGD_STARTS = 32      # best samples per problem that PGD starts from (+ island bests)
SEARCH_PGD_STEPS = 60
SEARCH_PGD_SCALES = (0.1, 0.01, 0.001)   # first step sizes, relative to the half-width
SEARCH_PGD_DECAY = 0.01     # the last step is this fraction of the first
SEARCH_CHUNK = 4096         # points per forward pass (the deadline is read between them)


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
    found = _descend(_Rows([problem]), point, np.zeros(len(point), int), steps,
                     lambda step: step_size * (0.1 if step >= steps // 2 else 1.0), deadline)
    return None if found is None else found[1]


def attack_problems(problems: list[VerificationProblem], steps: int = 50, restarts: int = 3,
                    step_size: float = 0.2, seed: int = 0, deadline: float = math.inf,
                    search_rounds: int = SEARCH_ROUNDS, search_share: float = SEARCH_SHARE
                    ) -> tuple[int, Counterexample] | None:
    """:func:`attack_problem` on several problems of one model at once: the problems that
    share a box are attacked in one batch (each from the centre and the same ``restarts``
    random points, each point descending its own problem's max_i r_i), one forward and one
    backward pass per step for all of them. (index in ``problems``, counterexample) of the
    first replayed violation, or None. A point is handed to ``find_counterexample`` (which
    decides, as in :func:`attack_problem`) when its rows are all ≤ a small slack in the
    batched pass, so that batched rounding cannot hide a violation. ``deadline``: as in
    :func:`attack_problem`, for every group.

    When that PGD finds nothing, boxes of at most ``SEARCH_MAX_INPUTS`` inputs are searched
    (:func:`search_problems`, module docstring) for at most ``search_rounds`` rounds and
    ``search_share`` of the time left before ``deadline`` (no share of an infinite one:
    then the rounds alone bound it)."""
    groups = group_by_box(problems, skip_empty=True)
    for members in groups:
        found = _attack_group([problems[i] for i in members], steps, restarts, step_size,
                              seed, deadline)
        if found is not None:
            return members[found[0]], found[1]
    now = time.perf_counter()
    if search_rounds <= 0 or now > deadline:
        return None
    share = now + search_share * (deadline - now) if math.isfinite(deadline) else math.inf
    return search_problems(problems, search_rounds, seed, share)


class _Rows:
    """The rows of several problems on one box, padded to one (problems, outputs, rows)
    array with rows that are never the maximum: ``worst(outputs, owners)`` is each point's
    max_i r_i for the problem that owns it, in one batched product."""

    def __init__(self, problems: list[VerificationProblem]) -> None:
        self.problems = problems
        count, rows = len(problems), max(p.num_rows for p in problems)
        self.spec = np.zeros((count, problems[0].spec.shape[1], rows))
        self.offset = np.full((count, rows), -1e300)
        for n, problem in enumerate(problems):
            self.spec[n, :, :problem.num_rows] = problem.spec.T
            self.offset[n, :problem.num_rows] = problem.offset

    def values(self, outputs: Any, owners: np.ndarray) -> Any:
        """(points, rows) r(x) of each point's own problem; a Tensor for a Tensor."""
        if isinstance(outputs, Tensor):
            product = ops.matmul(outputs.reshape(len(owners), 1, -1), Tensor(self.spec[owners]))
            return product.reshape(len(owners), -1) + Tensor(self.offset[owners])
        return np.einsum("po,por->pr", outputs, self.spec[owners]) + self.offset[owners]

    def replayed(self, points: np.ndarray, owners: np.ndarray, worst: np.ndarray,
                 outputs: np.ndarray) -> tuple[int, Counterexample] | None:
        """(owner, counterexample) of the first point whose rows are all ≤ a slack of 1e-9
        relative (so that batched rounding cannot hide a violation) and that its problem's
        ``find_counterexample`` confirms, or None."""
        slack = 1e-9 * (1.0 + np.abs(outputs).reshape(len(points), -1).max(axis=1))
        for candidate in np.flatnonzero(worst <= slack):
            owner = int(owners[candidate])
            found = self.problems[owner].find_counterexample(points[candidate][None])
            if found is not None:
                return owner, found
        return None


def _descend(rows: _Rows, points: np.ndarray, owners: np.ndarray, steps: int,
             step_sizes: Callable[[int], Any], deadline: float
             ) -> tuple[int, Counterexample] | None:
    """Signed PGD on each point's own max_i r_i over the box: x ← clip(x − α ⊙ (u − l)/2 ⊙
    sign ∇), α = ``step_sizes(step)`` (a number or one per point); every iterate is
    replayed (:meth:`_Rows.replayed`), no step is taken after ``deadline``."""
    first = rows.problems[0]
    lower, upper = first.lower, first.upper
    half_width = (upper - lower) / 2
    for step in range(steps + 1):
        x = Tensor(points, requires_grad=step < steps)
        outputs = first.model(x)
        values = rows.values(outputs, owners)
        found = rows.replayed(points, owners, values.data.max(axis=1), outputs.data)
        if found is not None or step == steps or time.perf_counter() > deadline:
            return found
        ops.max(values, axis=-1).sum().backward()
        alpha = np.reshape(step_sizes(step), (-1,) + (1,) * len(first.input_shape))
        points = np.clip(points - alpha * half_width * np.sign(x.grad), lower, upper)
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
    owners = np.repeat(np.arange(count), per)
    return _descend(_Rows(problems), point, owners, steps,
                    lambda step: step_size * (0.1 if step >= steps // 2 else 1.0), deadline)


def search_problems(problems: list[VerificationProblem], rounds: int = SEARCH_ROUNDS,
                    seed: int = 0, deadline: float = math.inf, first_round: int = 0
                    ) -> tuple[int, Counterexample] | None:
    """Search the boxes of at most ``SEARCH_MAX_INPUTS`` inputs for a counterexample:
    rounds ``first_round`` … ``first_round + rounds − 1`` of stratified sampling, island
    evolution and multi-scale PGD (module docstring), each round's points determined by
    (``seed``, round) alone. (index in ``problems``, replayed counterexample) of the first
    violation, or None; nothing is evaluated after ``deadline`` but the chunk or step
    under way."""
    for round_index in range(first_round, first_round + rounds):
        for members in group_by_box(problems, skip_empty=True):
            if problems[members[0]].lower.size > SEARCH_MAX_INPUTS:
                continue
            if time.perf_counter() > deadline:
                return None
            rng = random_stream(seed, round_index, name="certify-search")
            found = _search_round([problems[i] for i in members], rng, deadline)
            if found is not None:
                return members[found[0]], found[1]
    return None


def _stratified(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """(count, size) points of [0, 1]^size, one in each of ``count`` equal slices of every
    coordinate (Latin hypercube); every odd point has each coordinate moved to 0 or to 1
    with probability ``SEARCH_FACE`` each (faces and corners of the box)."""
    slices = rng.permuted(np.tile(np.arange(count), (size, 1)), axis=1).T
    unit = (slices + rng.random((count, size))) / count
    draw = rng.random((count, size))
    snapped = (np.arange(count) % 2 == 1)[:, None]
    unit = np.where(snapped & (draw < SEARCH_FACE), 0.0, unit)
    return np.where(snapped & (draw > 1 - SEARCH_FACE), 1.0, unit)


def _search_round(problems: list[VerificationProblem], rng: np.random.Generator,
                  deadline: float) -> tuple[int, Counterexample] | None:
    """One round on the problems of one box (index in ``problems``, counterexample)."""
    first = problems[0]
    lower, width = first.lower.reshape(-1), (first.upper - first.lower).reshape(-1)
    size, count = lower.size, len(problems)
    rows = _Rows(problems)

    def evaluate(unit: np.ndarray, owners: np.ndarray | None = None) -> tuple[
            np.ndarray | None, tuple[int, Counterexample] | None]:
        """max_i r_i of every problem (owners None: (points, problems)) or of each point's
        owner (points,) at the points lower + unit·width; None at the deadline."""
        values = []
        for begin in range(0, len(unit), SEARCH_CHUNK):
            if time.perf_counter() > deadline:
                return None, None
            points = (lower + unit[begin:begin + SEARCH_CHUNK] * width).reshape(
                -1, *first.input_shape)
            outputs = first.outputs(points)
            who = np.arange(count) if owners is None else owners[begin:begin + len(points)]
            if owners is None:  # every point for every problem
                each = np.repeat(outputs, count, axis=0)
                worst = rows.values(each, np.tile(who, len(points))).max(axis=1)
                found = rows.replayed(np.repeat(points, count, axis=0),
                                      np.tile(who, len(points)), worst, each)
                worst = worst.reshape(len(points), count)
            else:
                worst = rows.values(outputs, who).max(axis=1)
                found = rows.replayed(points, who, worst, outputs)
            if found is not None:
                return None, found
            values.append(worst)
        return np.concatenate(values), None

    # 1. stratified samples of the box, each scored for every problem
    samples = _stratified(rng, min(SEARCH_SAMPLES, max(SEARCH_MIN_SAMPLES,
                                                     SEARCH_LEVELS ** size)), size)
    scores, found = evaluate(samples)
    if scores is None:
        return found
    # 2. islands: per problem, the best samples at least SEARCH_SEPARATION apart seed
    #    populations that evolve apart (so one wide shallow basin cannot take them all)
    elite, elite_values, owners = [], [], []
    for problem in range(count):
        open_scores = scores[:, problem].copy()
        for _ in range(SEARCH_ISLANDS):
            seed = int(np.argmin(open_scores))
            if not np.isfinite(open_scores[seed]):
                break
            distance = np.abs(samples - samples[seed]).max(axis=1)
            open_scores[distance < SEARCH_SEPARATION] = np.inf  # the seed's neighbourhood
            near = np.argpartition(distance, SEARCH_ELITE - 1)[:SEARCH_ELITE]
            elite.append(samples[near])  # the seed and its nearest samples
            elite_values.append(scores[near, problem])
            owners.append(problem)
    if not elite:  # no finite score anywhere (overflowing outputs): nothing to evolve
        return None
    population, values = np.stack(elite), np.stack(elite_values)
    island_owner = np.array(owners)
    offspring_owner = np.repeat(island_owner, SEARCH_OFFSPRING)
    islands = len(island_owner)
    for _ in range(SEARCH_GENERATIONS):
        keep = np.argsort(values, axis=1, kind="stable")[:, :SEARCH_ELITE]
        population = np.take_along_axis(population, keep[..., None], axis=1)
        values = np.take_along_axis(values, keep, axis=1)
        spread = population.std(axis=1, keepdims=True)
        parents = rng.integers(0, SEARCH_ELITE, (islands, SEARCH_OFFSPRING))
        children = np.clip(np.take_along_axis(population, parents[..., None], axis=1)
                           + rng.standard_normal((islands, SEARCH_OFFSPRING, size)) * spread,
                           0.0, 1.0)
        child_values, found = evaluate(children.reshape(-1, size), offspring_owner)
        if child_values is None:
            return found
        population = np.concatenate([population, children], axis=1)
        values = np.concatenate([values, child_values.reshape(islands, -1)], axis=1)
    # 3. multi-scale PGD from each problem's best samples and each island's best point
    best = np.argmin(values, axis=1)
    starts = [population[np.arange(islands), best]]
    start_owners = [island_owner]
    for problem in range(count):
        top = np.argpartition(scores[:, problem], SEARCH_PGD_STARTS - 1)[:SEARCH_PGD_STARTS]
        starts.append(samples[top])
        start_owners.append(np.full(len(top), problem))
    unit, owner = np.concatenate(starts), np.concatenate(start_owners)
    scales = len(SEARCH_PGD_SCALES)
    points = np.tile(lower + unit * width, (scales, 1)).reshape(-1, *first.input_shape)
    first_steps = np.repeat(np.array(SEARCH_PGD_SCALES), len(unit))
    last = max(SEARCH_PGD_STEPS - 1, 1)
    return _descend(rows, points, np.tile(owner, scales), SEARCH_PGD_STEPS,
                    lambda step: first_steps * SEARCH_PGD_DECAY ** (step / last), deadline)


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
