"""Verdicts against exact MILP answers on random tiny networks and boxes.

Whenever the certifier finishes, its verdict must agree with the sign of the exact
minimum; ``certified`` must never be returned when a counterexample exists — checked
against the MILP minimiser replayed in float64, with no tolerance — and every returned
counterexample must replay.
"""

from __future__ import annotations

import numpy as np
from certify_instances import near_boundary_problem, tiny_network
from hypothesis import example, given
from hypothesis import strategies as st

from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.exact import minimise_output

# MILP optima are exact up to HiGHS's 1e-9 feasibility tolerances.
SOLVER_TOLERANCE = 1e-6

CONFIG = CertifierConfig(timeout=20.0, max_nodes=3000, batch_size=8, attack_steps=10,
                         attack_restarts=2, robustness_attack_steps=10,
                         robustness_attack_restarts=1, methods=("ibp", "deeppoly"))


def assert_agrees(verdict, problem, attained: float, exact_value: float) -> None:
    if verdict.status == "certified":
        assert attained > 0, "certified although the MILP minimiser violates the row"
    if verdict.status == "falsified":
        cex = verdict.counterexample
        assert np.all(cex.input >= problem.lower) and np.all(cex.input <= problem.upper)
        replayed = problem.row_values(problem.outputs(cex.input[None]))
        assert np.all(replayed <= 0)
        assert exact_value <= SOLVER_TOLERANCE
    if verdict.status != "unknown" and abs(exact_value) > SOLVER_TOLERANCE:
        assert (verdict.status == "certified") == (exact_value > 0)


@given(seed=st.integers(0, 10_000),
       widths=st.tuples(st.integers(2, 4), st.integers(3, 7), st.integers(3, 7)),
       radius=st.floats(0.05, 0.8),
       margin=st.sampled_from([-0.1, -0.01, -1e-3, 1e-3, 0.01, 0.1]))
# a sub-domain empty by a hair in the search's float64 bounds but not in the checker's
# rounded ones: closed as "empty" again and again, so the tree was never accepted
@example(seed=160, widths=(2, 7, 5), radius=0.5, margin=1e-3)
def test_verdict_agrees_with_milp_sign(seed, widths, radius, margin) -> None:
    inputs, first, second = widths
    model = tiny_network(seed, (inputs, first, second, 2))
    centre = np.random.default_rng(seed).uniform(-1, 1, inputs)
    problem, attained = near_boundary_problem(model, centre, radius, np.array([1.0, -1.0]),
                                              margin)
    verdict = Certifier(model, (inputs,), CONFIG).verify([problem])
    assert_agrees(verdict, problem, attained, margin)
    # Tiny problems must be decided. A leaf the search proves but the rigorous checker does
    # not (its own rounded intermediate bounds and slopes; seed 6498 once: search +0.026,
    # checker −0.017, MILP +0.043) is split further, not given up (certify/leaf_confirm.py).
    assert verdict.status != "unknown", verdict.reason


@given(seed=st.integers(0, 10_000), radius=st.floats(0.05, 0.6),
       shift=st.floats(-0.5, 0.5))
def test_multi_row_problems_against_milp(seed, radius, shift) -> None:
    """Two rows (unsafe iff both ≤ 0): certified iff the min over x of max(r₁, r₂) > 0."""
    model = tiny_network(seed, (3, 6, 6, 3))
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-1, 1, 3)
    spec = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]])
    offset = np.array([shift, -shift])
    from nobound.certify.problem import VerificationProblem

    problem = VerificationProblem(model, centre - radius, centre + radius, spec, offset)
    verdict = Certifier(model, (3,), CONFIG).verify([problem])
    if verdict.status == "certified":
        # every exact row minimiser must have some row positive
        for row in spec:
            exact = minimise_output(model, problem.lower, problem.upper, row)
            values = problem.row_values(problem.outputs(exact.minimiser[None]))
            assert values.max() > 0
    if verdict.status == "falsified":
        values = problem.row_values(problem.outputs(verdict.counterexample.input[None]))
        assert np.all(values <= 0)
    assert verdict.status != "unknown"


def test_robustness_verdicts_against_milp_per_class() -> None:
    """certify_sample on a tiny conv net over 4×4 images: certified iff every exact margin
    minimum is positive; falsified samples come with a replaying counterexample."""
    from nobound.nn import conv_net, initialise

    rng = np.random.default_rng(7)
    decided = {"certified": 0, "falsified": 0}
    for seed in range(4):
        model = conv_net((1, 4, 4), 3, [(2, 3, 1, 1)], [5], dtype=np.float64)
        initialise(model, "kaiming", seed=seed)
        certifier = Certifier(model, (1, 4, 4), CONFIG)
        x = rng.uniform(0.2, 0.8, (1, 4, 4))
        label = int(np.argmax(certifier.model(x[None]).data))
        for eps in (0.02, 0.2):
            verdict = certifier.certify_sample(x, label, eps)
            margins = []
            for other in range(3):
                if other != label:
                    row = np.zeros(3)
                    row[label], row[other] = 1.0, -1.0
                    exact = minimise_output(certifier.model, np.maximum(x - eps, 0),
                                            np.minimum(x + eps, 1), row)
                    margins.append((exact.value, exact.attained))
            if verdict.status == "certified":
                assert all(attained > 0 for _, attained in margins)
            elif verdict.status == "falsified":
                out = certifier.model(verdict.counterexample.input[None]).data[0]
                assert np.max(np.delete(out, label)) >= out[label]
                assert min(v for v, _ in margins) <= SOLVER_TOLERANCE
            decided[verdict.status] = decided.get(verdict.status, 0) + 1
    assert decided["certified"] and decided["falsified"]
