"""The certifier's stages: which stage decides, empty boxes, natural errors, counterexamples."""

from __future__ import annotations

import numpy as np
from certify_instances import near_boundary_problem, tiny_network

from nobound.certify.checker import check_certificate
from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.certify.problem import VerificationProblem

FAST = CertifierConfig(timeout=20.0, max_nodes=2000, batch_size=8, attack_steps=10,
                       attack_restarts=1, robustness_attack_steps=10,
                       robustness_attack_restarts=1)


def test_cheapest_sufficient_stage_decides() -> None:
    model = tiny_network(0, (3, 6, 6, 2))
    easy, _ = near_boundary_problem(model, np.zeros(3), 0.01, np.array([1.0, -1.0]), 1.0)
    verdict = Certifier(model, (3,), FAST).verify([easy])
    assert (verdict.status, verdict.method) == ("certified", "ibp")
    assert verdict.bounded == 0


def test_branch_and_bound_decides_what_bounds_cannot(branching_instance) -> None:
    model, problem = branching_instance
    verdict = Certifier(model, (3,), FAST).verify([problem])
    assert (verdict.status, verdict.method) == ("certified", "bab")
    assert verdict.bounded >= 3
    no_bab = Certifier(model, (3,), CertifierConfig(bab=False, attack_steps=5)).verify(
        [problem])
    assert no_bab.status == "unknown" and no_bab.lower_bound <= 0


def test_node_limit_gives_unknown(branching_instance) -> None:
    model, problem = branching_instance
    config = CertifierConfig(max_nodes=1, batch_size=1, methods=("deeppoly",),
                             attack_steps=2)
    verdict = Certifier(model, (3,), config).verify([problem])
    assert verdict.status == "unknown" and verdict.reason == "node limit"


def test_falsified_problem_returns_a_replaying_counterexample() -> None:
    model = tiny_network(1, (3, 6, 6, 2))
    problem, attained = near_boundary_problem(model, np.zeros(3), 0.5,
                                              np.array([1.0, -1.0]), -0.05)
    assert attained < 0
    verdict = Certifier(model, (3,), FAST).verify([problem])
    assert verdict.status == "falsified"
    values = problem.row_values(problem.outputs(verdict.counterexample.input[None]))
    assert np.all(values <= 0)
    np.testing.assert_array_equal(verdict.counterexample.output,
                                  problem.outputs(verdict.counterexample.input[None])[0])


def test_empty_box_is_certified_and_one_bad_problem_falsifies_all() -> None:
    model = tiny_network(2, (2, 4, 2))
    empty = VerificationProblem(model, np.ones(2), np.zeros(2), np.array([[1.0, 0.0]]),
                                np.array([-100.0]))
    assert Certifier(model, (2,), FAST).verify([empty]).status == "certified"
    everywhere = VerificationProblem(model, np.zeros(2), np.ones(2), np.array([[0.0, 0.0]]),
                                     np.array([-1.0]))  # 0·y − 1 ≤ 0: every x is unsafe
    verdict = Certifier(model, (2,), FAST).verify([empty, everywhere])
    assert verdict.status == "falsified" and verdict.details["problem"] == 1


def test_certificates_from_the_pipeline_check(branching_instance) -> None:
    model, problem = branching_instance
    easy = VerificationProblem(model, problem.lower, problem.upper, problem.spec,
                               problem.offset + 10.0)
    config = CertifierConfig(timeout=20.0, batch_size=4, certificate=True, attack_steps=5)
    verdict = Certifier(model, (3,), config).verify([easy, problem])
    assert verdict.status == "certified"
    assert [len(p.nodes) for p in verdict.certificate.problems][0] == 1
    report = check_certificate(model, verdict.certificate, [easy, problem])
    assert report.valid, report.errors


def test_robustness_sample_natural_error_and_eps_zero() -> None:
    model = tiny_network(3, (4, 8, 3))
    certifier = Certifier(model, (4,), FAST)
    x = np.full(4, 0.5)
    scores = certifier.model(x[None]).data[0]
    label, wrong = int(np.argmax(scores)), int(np.argmin(scores))
    verdict = certifier.certify_sample(x, wrong, 0.1)
    assert (verdict.status, verdict.method) == ("falsified", "natural")
    assert not verdict.details["natural_correct"]
    verdict = certifier.certify_sample(x, label, 0.0)
    assert verdict.status == "certified"
    assert verdict.details == {"natural_correct": True, "adversarial_robust": True,
                               "proof_check": "passed"}


def test_exhausted_time_gives_unknown_timeout(branching_instance) -> None:
    model, problem = branching_instance
    config = CertifierConfig(timeout=1e-9, attack_steps=1, attack_restarts=1)
    verdict = Certifier(model, (3,), config).verify([problem])
    assert verdict.status == "unknown" and verdict.reason == "timeout"


def test_whole_box_bounds_of_problems_sharing_a_box_equal_their_own() -> None:
    """Problems on one box share a batch element of the whole-box bound (their rows
    stacked); each problem's rows come back as when it is bounded alone, and those of a
    problem on another box too."""
    from nobound.certify.problem import float64_model, robustness_problems

    model = float64_model(tiny_network(4, (3, 10, 10, 4)))
    x = np.random.default_rng(4).uniform(0.3, 0.7, 3)
    shared = robustness_problems(model, x, 0, 0.1)
    other = robustness_problems(model, x + 0.05, 1, 0.05)[:2]
    problems = shared + other
    certifier = Certifier(model, (3,), CertifierConfig())
    for method in ("ibp", "deeppoly", "alpha-crown"):
        together = certifier._stage_bounds(problems, method)[0]
        for problem, rows in zip(problems, together, strict=True):
            alone = certifier._stage_bounds([problem], method)[0][0]
            assert rows.shape == (problem.num_rows,)
            np.testing.assert_allclose(rows, alone, rtol=1e-10, atol=1e-12)


def test_the_small_box_search_runs_only_on_problems_the_bounds_leave_open(monkeypatch) -> None:
    """The falsifier's search of small boxes runs after the whole-box bounds, on the open
    problems only: a problem DeepPoly proves never pays for it, and a thin violation that
    PGD misses (falsify's corner problem) is found by it, replaying."""
    import sys
    from pathlib import Path

    import nobound.certify.pipeline as pipeline

    sys.path.insert(0, str(Path(__file__).parent))
    from test_falsify import corner_problem

    calls = []
    original = pipeline.search_problems

    def counted(problems, **kwargs):
        calls.append(len(problems))
        return original(problems, **kwargs)

    monkeypatch.setattr(pipeline, "search_problems", counted)
    model = tiny_network(0, (3, 8, 8, 2))
    proved, _ = near_boundary_problem(model, np.zeros(3), 0.01, np.array([1.0, -1.0]), 0.5)
    certifier = Certifier(model, (3,), CertifierConfig(methods=("ibp", "deeppoly")))
    assert certifier.verify([proved]).status == "certified"
    assert calls == []
    corner = corner_problem()
    verdict = Certifier(corner.model, (2,), CertifierConfig(methods=("ibp", "deeppoly"),
                                                            bab=False)).verify([corner])
    assert verdict.status == "falsified" and verdict.method == "search"
    assert calls == [1]
    assert corner.row_values(corner.outputs(verdict.counterexample.input[None]))[0, 0] <= 0
