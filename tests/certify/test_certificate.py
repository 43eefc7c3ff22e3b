"""Certificates: valid ones check, tampered ones are rejected, files round-trip."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from certify_instances import near_boundary_problem, tiny_network

from nobound.certify.certificate import TreeNode, load_certificate, save_certificate
from nobound.certify.checker import check_certificate
from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.certify.problem import VerificationProblem

CONFIG = CertifierConfig(timeout=30.0, max_nodes=2000, batch_size=4, certificate=True)


@pytest.fixture(scope="module")
def certified(branching_instance):
    model, problem = branching_instance
    verdict = Certifier(model, (3,), CONFIG).verify([problem])
    assert verdict.status == "certified" and verdict.method == "bab"
    return model, problem, verdict.certificate


def internal_nodes(certificate) -> list[int]:
    return [i for i, n in enumerate(certificate.problems[0].nodes) if n.split is not None]


def leaves(certificate) -> list[int]:
    return [i for i, n in enumerate(certificate.problems[0].nodes) if n.proof is not None]


def test_valid_certificate_checks_and_round_trips(certified, tmp_path) -> None:
    model, problem, certificate = certified
    assert internal_nodes(certificate), "the instance must need branching"
    report = check_certificate(model, certificate, [problem])
    assert report.valid, report.errors
    assert report.leaves == len(leaves(certificate))
    path = save_certificate(certificate, tmp_path / "cert.json.gz")
    loaded = load_certificate(path)
    assert check_certificate(model, loaded, [problem]).valid
    assert loaded.problems[0].nodes == certificate.problems[0].nodes


def test_raised_leaf_bound_is_rejected(certified) -> None:
    model, problem, certificate = certified
    tampered = copy.deepcopy(certificate)
    proved = [i for i in leaves(tampered)
              if tampered.problems[0].nodes[i].proof.method != "empty"]
    leaf = tampered.problems[0].nodes[proved[0]]
    leaf.proof.bound += 1.0
    report = check_certificate(model, tampered, [problem])
    assert not report.valid and "not implied" in " ".join(report.errors)


def test_removed_split_is_rejected(certified) -> None:
    """Replacing the root split by one child's proof leaves the other half unproved."""
    model, problem, certificate = certified
    tampered = copy.deepcopy(certificate)
    nodes = tampered.problems[0].nodes
    root = nodes[0]
    assert root.split is not None
    first_leaf = nodes[leaves(tampered)[0]]
    nodes[0] = TreeNode(proof=first_leaf.proof)
    report = check_certificate(model, tampered, [problem])
    assert not report.valid


def test_dropped_child_and_bogus_multipliers_are_rejected(certified) -> None:
    model, problem, certificate = certified
    tampered = copy.deepcopy(certificate)
    node = tampered.problems[0].nodes[internal_nodes(tampered)[0]]
    node.children = (node.children[0], node.children[0])
    assert not check_certificate(model, tampered, [problem]).valid

    tampered = copy.deepcopy(certificate)
    leaf = tampered.problems[0].nodes[leaves(tampered)[-1]]
    leaf.proof.betas = [(0, 0, -1.0)]  # negative, and on a neuron no split fixes here
    assert not check_certificate(model, tampered, [problem]).valid


def test_other_model_or_other_property_is_rejected(certified) -> None:
    model, problem, certificate = certified
    other = copy.deepcopy(model)
    other.layers[0].bias.data = other.layers[0].bias.data + 1e-9
    report = check_certificate(other, certificate, [problem])
    assert not report.valid and "another model" in report.errors[0]
    wider = VerificationProblem(model, problem.lower - 0.1, problem.upper, problem.spec,
                                problem.offset)
    report = check_certificate(model, certificate, [wider])
    assert not report.valid and "differ" in report.errors[0]


def test_certificate_of_a_widened_box_does_not_check() -> None:
    """A certificate whose box is edited (without the property check) must fail where the
    wider box holds a counterexample: the checker re-derives every bound."""
    model = tiny_network(5, (2, 6, 6, 2))
    problem, attained = near_boundary_problem(model, np.zeros(2), 0.3, np.array([1.0, -1.0]),
                                              0.02)
    assert attained > 0
    verdict = Certifier(model, (2,), CONFIG).verify([problem])
    assert verdict.status == "certified"
    tampered = copy.deepcopy(verdict.certificate)
    tampered.problems[0].lower = (problem.lower - 1.0).tolist()
    tampered.problems[0].upper = (problem.upper + 1.0).tolist()
    from nobound.exact import minimise_output

    wide = minimise_output(model, problem.lower - 1.0, problem.upper + 1.0, problem.spec[0])
    assert wide.attained + problem.offset[0] < 0  # the wider box holds a counterexample
    assert not check_certificate(model, tampered).valid
    assert check_certificate(model, verdict.certificate).valid


def test_checker_loads_neither_branch_and_bound_nor_relaxations() -> None:
    import subprocess
    import sys

    code = ("import sys, nobound.certify.checker; "
            "print(sorted(m for m in sys.modules if m.startswith(('nobound.certify.bab', "
            "'nobound.certify.pipeline', 'nobound.certify.subproblems', 'nobound.bounds'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
