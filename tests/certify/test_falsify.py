"""The search of small boxes (``search_problems``, run by ``attack_problems`` after its PGD):
it finds a counterexample hidden in a corner that PGD from the centre and random restarts
misses, every counterexample it returns replays, it is determined by its seed, it keeps its
deadline (virtual clock), and it finds nothing where nothing exists."""

from __future__ import annotations

import numpy as np
import pytest
from certify_instances import near_boundary_problem, tiny_network
from conftest import VirtualClock
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.autodiff import ops
from nobound.certify import falsify
from nobound.certify.falsify import attack_problems, search_problems
from nobound.certify.problem import VerificationProblem, float64_model
from nobound.nn import Linear, ReLU, Sequential


def corner_problem() -> VerificationProblem:
    """r(x) = 0.05 + 0.1 |x − (0.3, 0.3)|₁ − 10 relu(x₀ + x₁ − 1.94) on [0, 1]²: a bowl
    whose only minimum (0.05 at (0.3, 0.3)) holds, and a notch that violates the property
    only in the corner triangle x₀ + x₁ > 1.96 (0.02 % of the box). PGD from a start
    outside the notch descends to the bowl's minimum."""
    first, second = Linear(2, 5, dtype=np.float64), Linear(5, 1, dtype=np.float64)
    first.weight.data = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0],
                                  [1.0, 1.0]])
    first.bias.data = np.array([-0.3, 0.3, -0.3, 0.3, -1.94])
    second.weight.data = np.array([[0.1, 0.1, 0.1, 0.1, -10.0]])
    second.bias.data = np.array([0.05])
    model = float64_model(Sequential(first, ReLU(), second))
    return VerificationProblem(model, np.zeros(2), np.ones(2), np.array([[1.0]]),
                               np.zeros(1))


def violated_problems(seed: int, inputs: int = 3) -> list[VerificationProblem]:
    """Three problems on one box of a random network: one violated (exact minimum −0.02),
    two that hold (+0.02)."""
    model = tiny_network(seed, (inputs, 8, 8, 3))
    centre = np.random.default_rng(seed).uniform(-1, 1, inputs)
    rows = (np.array([1.0, -1.0, 0.0]), np.array([0.0, 1.0, -1.0]), np.array([-1.0, 0.0, 1.0]))
    return [near_boundary_problem(model, centre, 0.5, row, margin)[0]
            for row, margin in zip(rows, (0.02, -0.02, 0.02), strict=True)]


def test_the_search_finds_the_corner_that_pgd_misses() -> None:
    problem = corner_problem()
    assert attack_problems([problem], search_rounds=0) is None  # PGD alone: the bowl
    hit = attack_problems([problem])
    assert hit is not None
    index, found = hit
    assert index == 0 and found.input.sum() > 1.96
    assert problem.row_values(problem.outputs(found.input[None]))[0, 0] <= 0


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_every_returned_counterexample_replays(seed: int) -> None:
    problems = violated_problems(seed)
    hit = search_problems(problems, rounds=1, seed=seed)
    assert hit is not None  # a −0.02 minimum on three inputs: one round finds it
    index, found = hit
    assert index == 1  # the violated problem, not one that holds
    problem = problems[index]
    assert np.all(found.input >= problem.lower) and np.all(found.input <= problem.upper)
    assert np.all(problem.row_values(problem.outputs(found.input[None])) <= 0)
    assert problem.find_counterexample(found.input[None]) is not None


def test_the_search_is_determined_by_its_seed_and_round() -> None:
    problems = violated_problems(7)
    inputs = []
    for seed in (0, 0, 1, 2):
        hit = search_problems(problems, rounds=1, seed=seed)
        assert hit is not None
        inputs.append(hit[1].input)
    assert np.array_equal(inputs[0], inputs[1])
    assert not all(np.array_equal(inputs[0], other) for other in inputs[2:])
    # round r of a longer search is the search that starts at round r
    later = search_problems(problems, rounds=1, seed=0, first_round=3)
    assert later is not None and not np.array_equal(later[1].input, inputs[0])


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_nothing_is_found_where_nothing_exists(seed: int) -> None:
    problems = violated_problems(seed)
    holding = [problems[0], problems[2]]  # exact minima +0.02
    assert search_problems(holding, rounds=2, seed=seed) is None
    assert attack_problems(holding, seed=seed, search_rounds=2) is None


def test_boxes_with_many_inputs_are_left_to_pgd(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = violated_problems(3, inputs=4)
    assert search_problems(problems, rounds=1) is not None
    monkeypatch.setattr(falsify, "SEARCH_MAX_INPUTS", 3)
    assert search_problems(problems, rounds=1) is None


COST_PER_POINT = 1e-3   # one point through the network (sampling and evolution)
COST_PER_STEP = 1.0     # one PGD step (its max_i r_i)


@pytest.fixture
def clock(virtual_clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    virtual_clock.charge(VerificationProblem, "outputs", COST_PER_POINT,
                         lambda problem, points: len(points))
    virtual_clock.charge(ops, "max", COST_PER_STEP)
    return virtual_clock


def test_the_search_keeps_its_deadline(clock: VirtualClock) -> None:
    holding = violated_problems(5)[::2]
    assert search_problems(holding, rounds=2) is None
    full = clock.now  # two whole rounds
    for deadline in (0.5, 20.0, full / 2):
        clock.reset()
        assert search_problems(holding, rounds=2, deadline=deadline) is None
        assert clock.now <= deadline + clock.largest_step < full


def test_the_first_attack_searches_for_its_share_of_the_time_left(clock: VirtualClock
                                                                  ) -> None:
    holding = violated_problems(5)[::2]
    clock.reset()
    assert attack_problems(holding, search_rounds=0, deadline=1e6) is None
    pgd = clock.now
    for deadline in (200.0, 1000.0):
        clock.reset()
        assert attack_problems(holding, deadline=deadline, search_rounds=100) is None
        share = falsify.SEARCH_SHARE * (deadline - pgd)
        assert pgd + share / 2 < clock.now <= pgd + share + clock.largest_step


def test_a_box_whose_outputs_overflow_everywhere_ends_the_search_quietly() -> None:
    """Outputs of ±inf/nan at every sample (an ill-conditioned network: z = 0·x + 1e300,
    then ×1e300) leave no finite score to evolve: the search answers None, no crash
    (found by tests/certify/test_ill_conditioned.py once the search ran after the bounds)."""
    first, second = Linear(1, 1, dtype=np.float64), Linear(1, 1, dtype=np.float64)
    first.weight.data = np.array([[0.0]])
    first.bias.data = np.array([1e300])
    second.weight.data = np.array([[1e300]])
    second.bias.data = np.array([0.0])
    model = float64_model(Sequential(first, ReLU(), second))
    problem = VerificationProblem(model, np.zeros(1), np.ones(1), np.array([[1.0]]),
                                  np.zeros(1))
    assert search_problems([problem]) is None
