"""The certifier's deadline covers the rigorous proof check: an answer is never later than
the deadline by more than the work of one bounding call and one checked node, and an
unfinished check never becomes a proof.

Time here is a virtual clock that advances only by the work done — each bounded box or
sub-problem and each node the checker derives costs a fixed amount — so the tests are
deterministic and the lateness is measured in units of that work, not in seconds."""

from __future__ import annotations

import numpy as np
import pytest
from certify_instances import near_boundary_problem, tiny_network
from conftest import VirtualClock

from nobound.certify import bab, checker, input_split
from nobound.certify.bab import BabConfig, branch_and_bound
from nobound.certify.certificate import problem_certificate
from nobound.certify.checker import check_proofs
from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.certify.stored_network import stored_network
from nobound.exact import dense_network

BOX_COST = 1.0     # one box or sub-problem bounded by the search
NODE_COST = 10.0   # one node's bounds derived by the checker (dearer, as on ACAS Xu)


@pytest.fixture
def clock(virtual_clock: VirtualClock) -> VirtualClock:
    """The virtual clock, charging the search's boxes and sub-problems and the checker's
    nodes."""
    virtual_clock.charge(checker, "node_bounds", NODE_COST)
    virtual_clock.charge(input_split, "bound_boxes", BOX_COST, lambda net, lo, *a: len(lo))
    virtual_clock.charge(bab, "bound_subproblems", BOX_COST,
                         lambda problem, dense, signs, *a: len(signs[0]))
    return virtual_clock


def _instance(domain: str) -> tuple:
    """A true property (exact minimum 1e-4) whose proof needs a split tree (a smaller box
    for ReLU splits, which need far more nodes than input splits on two inputs)."""
    model = tiny_network(0, (2, 16, 16, 2))
    centre = np.random.default_rng(0).uniform(-1, 1, 2)
    radius = 1.0 if domain == "input" else 0.3
    problem, _ = near_boundary_problem(model, centre, radius, np.array([1.0, -1.0]), 1e-4)
    return model, problem


@pytest.mark.parametrize("domain", ["input", "relu"])
def test_answers_are_never_late_by_more_than_one_step(clock: VirtualClock, domain: str
                                                      ) -> None:
    model, problem = _instance(domain)

    def certify(timeout: float):
        certifier = Certifier(model, (2,), CertifierConfig(
            timeout=timeout, methods=("deeppoly",), bab_domain=domain, batch_size=4))
        clock.reset()
        return certifier.verify([problem], attack=False), clock.largest_step

    unlimited, _ = certify(1e9)
    assert unlimited.status == "certified" and unlimited.bounded > 4
    total = unlimited.seconds
    for timeout in np.linspace(0.05, 1.2, 9) * total:
        verdict, step = certify(float(timeout))
        assert verdict.status in ("certified", "unknown")  # the property is true
        # at most one bounding call and one checked node (the calibration's or the
        # check's) after the deadline
        assert verdict.seconds <= timeout + 2 * step, (timeout, verdict)
        if verdict.status == "unknown":
            assert verdict.reason == "timeout"
    # the check dominates here: a search finished before the deadline whose check did not
    assert certify(0.9 * total)[0].status == "unknown"


def test_an_unfinished_check_is_never_a_proof(clock: VirtualClock) -> None:
    model, problem = _instance("input")
    dense, stored = dense_network(model, (2,)), stored_network(model, (2,))
    result = branch_and_bound(problem, dense, BabConfig(domain="input"))
    assert result.status == "certified" and len(result.nodes) > 3
    certificate = [problem_certificate(problem, result.nodes)]
    clock.now = 0.0
    full = check_proofs(stored, certificate, reproduce=False)
    assert full.valid and not full.out_of_time and full.nodes == len(result.nodes)
    for deadline in (-1.0, 0.0, NODE_COST * 2.5):
        clock.now = 0.0
        report = check_proofs(stored, certificate, reproduce=False, deadline=deadline)
        assert not report.valid and report.out_of_time
        assert "ran out of time" in report.errors[0]
        # it stops before the first node it would begin after the deadline; only the
        # leaves cost work (an input split's halves are bounded on their own boxes, so
        # the split node's own bounds are not derived)
        assert report.leaves <= max(0, int(deadline // NODE_COST) + 1)


def test_the_check_stops_inside_a_node_with_many_tightened_bounds(virtual_clock: VirtualClock
                                                                 ) -> None:
    """beta-CROWN's root records tightened bounds on every layer above the first; they are
    re-derived one layer at a time (one back-substitution each), so the check also stops
    between layers: at most one past the deadline, counted on a clock that ticks once per
    back-substitution."""
    model = tiny_network(0, (2, 12, 12, 12, 2))
    centre = np.random.default_rng(0).uniform(-1, 1, 2)
    problem, _ = near_boundary_problem(model, centre, 0.3, np.array([1.0, -1.0]), 1e-4)
    dense, stored = dense_network(model, (2,)), stored_network(model, (2,))
    result = branch_and_bound(problem, dense, BabConfig(method="beta-crown", batch_size=4))
    layers = {entry.layer for entry in result.nodes[0].tightened}
    assert result.status == "certified" and len(layers) > 1
    certificate = [problem_certificate(problem, result.nodes)]
    virtual_clock.charge(checker, "_back_substitute", 1.0)
    virtual_clock.reset()
    box = (problem.lower.reshape(-1), problem.upper.reshape(-1))
    checker.node_bounds(stored, box, [np.zeros(n, np.int8) for n in stored.hidden_sizes], None)
    root_bounds = virtual_clock.now
    virtual_clock.reset()
    assert check_proofs(stored, certificate, reproduce=False).valid
    full = virtual_clock.now
    virtual_clock.reset()
    deadline = root_bounds + 0.5  # the root's own bounds, then half of a tightened layer
    report = check_proofs(stored, certificate, reproduce=False, deadline=deadline)
    assert report.out_of_time and not report.valid
    assert virtual_clock.now <= deadline + 1 < full


def test_attacks_take_no_step_after_the_deadline(virtual_clock: VirtualClock) -> None:
    """PGD (one problem, or problems batched by box) replays the points it has and stops
    at the deadline: one gradient step costs one unit here, so a deadline at 2.5 lets
    steps 0, 1, 2 run out of 50."""
    from nobound.autodiff import ops
    from nobound.certify.falsify import attack_problem, attack_problems

    model, problem = _instance("relu")  # a true property: no attack can succeed
    virtual_clock.charge(ops, "max", 1.0)  # one max_i r_i per step, then its gradient
    for attack in (lambda: attack_problem(problem, steps=50, deadline=2.5),
                   lambda: attack_problems([problem, problem], steps=50, deadline=2.5)):
        virtual_clock.reset()
        assert attack() is None
        assert virtual_clock.now == 3
    virtual_clock.reset()
    assert attack_problem(problem, steps=50) is None and virtual_clock.now == 50


def test_the_first_attack_keeps_the_deadline(virtual_clock: VirtualClock) -> None:
    """A timeout shorter than the certifier's first attack: the answer is ``unknown``
    (timeout), never a proof, and at most one attack step late."""
    from nobound.autodiff import ops

    model, problem = _instance("relu")
    virtual_clock.charge(ops, "max", 1.0)
    for timeout in (0.5, 7.5, 30.0):
        certifier = Certifier(model, (2,), CertifierConfig(timeout=timeout, attack_steps=50,
                                                           attack_restarts=3))
        virtual_clock.reset()
        verdict = certifier.verify([problem])
        assert verdict.status == "unknown" and verdict.reason == "timeout", verdict
        assert virtual_clock.now <= timeout + 1


def test_the_searchs_attacks_keep_to_their_share_of_the_time(virtual_clock: VirtualClock
                                                             ) -> None:
    """Attacks during branch and bound cost 10 units here, a bounded sub-problem 1: due
    every round, they still take at most ``attack_share`` of the time (plus one attack)."""
    from nobound.certify.bab import BabConfig

    model, problem = _instance("relu")
    attacks = []
    virtual_clock.charge(bab, "bound_subproblems", BOX_COST,
                         lambda problem, dense, signs, *a: len(signs[0]))
    virtual_clock.charge(bab, "attack_problem", 10.0, lambda *a: attacks.append(1) or 1)
    config = BabConfig(batch_size=4, attack_every=1, attack_share=0.2, max_nodes=400)
    result = branch_and_bound(problem, dense_network(model, (2,)), config)
    assert result.rounds > 20 and len(attacks) >= 2, result
    assert 10.0 * len(attacks) <= 0.2 * virtual_clock.now + 10.0
