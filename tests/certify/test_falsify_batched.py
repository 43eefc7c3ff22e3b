"""One batched attack for several problems: the counterexample it returns belongs to the
problem it names, replays, and lies in that problem's box; none comes back when none exists."""

from __future__ import annotations

import numpy as np
from certify_instances import near_boundary_problem, tiny_network
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.certify.falsify import attack_problem, attack_problems


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), bad=st.integers(0, 2), shift=st.booleans())
def test_the_violated_problem_is_found_and_named(seed, bad, shift) -> None:
    model = tiny_network(seed, (3, 6, 5, 2))
    centre = np.random.default_rng(seed).uniform(-1, 1, 3)
    problems = []
    for k in range(3):
        # one problem with a clear violation (exact minimum −0.5), the others safe (+0.5);
        # with ``shift`` the problems sit on two different boxes
        box_centre = centre + (0.3 * k if shift else 0.0)
        problem, _ = near_boundary_problem(model, box_centre, 0.4, np.array([1.0, -1.0]),
                                           -0.5 if k == bad else 0.5)
        problems.append(problem)
    hit = attack_problems(problems, steps=30, restarts=3, seed=seed)
    single = attack_problem(problems[bad], steps=30, restarts=3, seed=seed)
    if single is not None:  # what one problem's attack finds, the batch finds too
        assert hit is not None
    if hit is not None:
        index, found = hit
        assert index == bad
        problem = problems[index]
        assert np.all(found.input >= problem.lower) and np.all(found.input <= problem.upper)
        assert np.all(problem.row_values(problem.outputs(found.input[None])) <= 0)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_no_counterexample_when_every_problem_holds(seed) -> None:
    model = tiny_network(seed, (2, 5, 4, 2))
    centre = np.random.default_rng(seed).uniform(-1, 1, 2)
    problems = [near_boundary_problem(model, centre, 0.3, row, 1e-3)[0]
                for row in (np.array([1.0, -1.0]), np.array([-1.0, 1.0]))]
    # both minima are +1e-3 (MILP): no point of the box violates either
    assert attack_problems(problems, steps=20, restarts=2, seed=seed) is None
