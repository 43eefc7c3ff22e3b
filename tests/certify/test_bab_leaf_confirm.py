"""Leaf confirmation during branch and bound: the confirmer says what the checker says, and
a leaf it refuses is split further instead of ending the search ``unknown``."""

from __future__ import annotations

import copy
import re

import numpy as np
from certify_instances import near_boundary_problem, tiny_network
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.certify.bab import BabConfig, branch_and_bound, repair
from nobound.certify.certificate import problem_certificate
from nobound.certify.checker import check_proofs
from nobound.certify.leaf_confirm import LeafConfirmer
from nobound.certify.stored_network import stored_network
from nobound.exact import dense_network

MODES = [dict(method="deeppoly", domain="relu"), dict(method="beta-crown", domain="relu"),
         dict(method="beta-crown", domain="relu", branching="fsb"),
         dict(method="deeppoly", domain="input")]


def _instance(seed: int, inputs: int, radius: float, margin: float):
    model = tiny_network(seed, (inputs, 6, 5, 2))
    centre = np.random.default_rng(seed).uniform(-1, 1, inputs)
    problem, _ = near_boundary_problem(model, centre, radius, np.array([1.0, -1.0]), margin)
    return model, problem, stored_network(model, (inputs,)), dense_network(model, (inputs,))


def _rejected_nodes(stored, problem, nodes) -> set[int]:
    report = check_proofs(stored, [problem_certificate(problem, nodes)], reproduce=False)
    return {int(m.group(1)) for e in report.errors
            if (m := re.search(r"node (\d+): rigorous bound", e))}


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), inputs=st.integers(2, 3), radius=st.floats(0.1, 0.8),
       mode=st.sampled_from(MODES), tamper=st.floats(0.0, 2.0))
def test_confirmer_agrees_with_the_checker_on_every_leaf(seed, inputs, radius, mode,
                                                         tamper) -> None:
    """Honest leaves and leaves whose proof was made worse (β pushed up, α moved, the stored
    row scaled down to 0) are judged alike by the confirmer and by the tree check."""
    _, problem, stored, dense = _instance(seed, inputs, radius, 0.01)
    result = branch_and_bound(problem, dense, BabConfig(batch_size=4, max_nodes=300, **mode))
    nodes = copy.deepcopy(result.nodes)
    rng = np.random.default_rng(seed)
    for node in nodes:
        if node.proof is None or rng.random() < 0.5:
            continue
        node.proof.betas = [(k, i, b + tamper * 10) for k, i, b in node.proof.betas]
        node.proof.alphas = [[min(1.0, a + tamper) for a in layer]
                             for layer in node.proof.alphas]
        if tamper > 1.5:
            node.proof.row_weights = [0.0 for _ in node.proof.row_weights]
    parents = {int(c): i for i, n in enumerate(nodes) if n.children for c in n.children}
    confirmer = LeafConfirmer(stored, problem, nodes, parents)
    refused = _rejected_nodes(stored, problem, nodes)
    for index, node in enumerate(nodes):
        if node.proof is not None and node.proof.method != "empty":
            assert confirmer.proves(index, node.proof) == (index not in refused), index


class _RefuseFirst:
    """A confirmer that refuses the first ``count`` bound proofs it is asked about (as if
    the checker's arithmetic disagreed), then asks the real one. (An LP leaf has no unstable
    neuron left to split: a refused one stays undecided, so LP leaves are not refused.)"""

    def __init__(self, real: LeafConfirmer, count: int) -> None:
        self.real, self.left = real, count

    def proves(self, index, proof) -> bool:
        if self.left > 0 and proof.method != "lp":
            self.left -= 1
            return False
        return self.real.proves(index, proof)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(MODES[:3]), refuse=st.integers(1, 4))
def test_a_refused_leaf_is_split_further_and_the_tree_checks(seed, mode, refuse) -> None:
    """ReLU splits, leaves confirmed one by one: the search asks before it closes a leaf."""
    _, problem, stored, dense = _instance(seed, 2, 0.3, 0.05)
    config = BabConfig(batch_size=4, max_nodes=3000, leaf_checks="leaf", **mode)
    plain = branch_and_bound(problem, dense, config)
    if plain.status != "certified":
        return
    result = branch_and_bound(
        problem, dense, config,
        confirm=lambda p, n, par: _RefuseFirst(LeafConfirmer(stored, p, n, par), refuse))
    assert result.status == "certified"
    assert result.rejected >= 1
    report = check_proofs(stored, [problem_certificate(problem, result.nodes)],
                          reproduce=False)
    assert report.valid, report.errors


class _RefuseInFirstCheck:
    """A confirmer whose first check of the finished tree also refuses the first ``count``
    bound proofs (as if the checker's arithmetic disagreed); later checks are the real."""

    def __init__(self, real: LeafConfirmer, count: int) -> None:
        self.real, self.count, self.checks = real, count, 0
        self.forced: list[int] = []

    def refused(self) -> list[int]:
        self.checks += 1
        real = self.real.refused()
        if self.checks > 1:
            return real
        proved = [i for i, n in enumerate(self.real.nodes)
                  if n.proof is not None and n.proof.method not in ("lp", "empty")]
        self.forced = proved[:self.count]
        return sorted(set(real) | set(self.forced))

    def proves(self, index, proof) -> bool:
        return self.real.proves(index, proof)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(MODES[:3]), refuse=st.integers(0, 3))
def test_leaves_checked_with_the_tree_are_reopened_when_refused(seed, mode, refuse) -> None:
    """ReLU splits, leaves checked with the finished tree: the leaves the check refuses are
    split further; a tree reported as checked passes the certifier's check_proofs."""
    _, problem, stored, dense = _instance(seed, 2, 0.3, 0.05)
    config = BabConfig(batch_size=4, max_nodes=3000, leaf_checks="tree", **mode)
    plain = branch_and_bound(problem, dense, config)
    if plain.status != "certified":
        return
    confirmers = []

    def confirm(p, n, par):
        confirmers.append(_RefuseInFirstCheck(LeafConfirmer(stored, p, n, par), refuse))
        return confirmers[-1]

    result = branch_and_bound(problem, dense, config, confirm=confirm)
    assert result.status == "certified" and confirmers[0].checks >= 1
    report = check_proofs(stored, [problem_certificate(problem, result.nodes)],
                          reproduce=False)
    assert report.valid, report.errors
    if refuse:
        assert result.rejected >= 1 and not result.checked  # the certifier checks again
        forced = confirmers[0].forced
        # each refused leaf was split further, or (no unstable neuron left) closed by its LP
        assert forced and all(
            result.nodes[i].children if result.nodes[i].proof is None
            else result.nodes[i].proof.method in ("lp", "empty") for i in forced)
    else:
        assert result.rejected == 0 and result.checked


class _RefuseLeaves:
    """A confirmer claiming that the checker refuses the given leaves (boxes: the real ones)."""

    def __init__(self, real: LeafConfirmer, leaves: list[int]) -> None:
        self.real, self.leaves = real, leaves

    def refused(self) -> list[int]:
        return self.leaves

    def box_of(self, index):
        return self.real.box_of(index)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), refuse=st.integers(1, 3))
def test_refused_input_split_leaves_are_split_again_and_the_tree_checks(seed, refuse) -> None:
    """Input splits: after the check refuses leaves, ``repair`` splits each again."""
    _, problem, stored, dense = _instance(seed, 2, 0.3, 0.05)
    config = BabConfig(domain="input", batch_size=4, max_nodes=3000)
    plain = branch_and_bound(problem, dense, config)
    if plain.status != "certified":
        return
    nodes = copy.deepcopy(plain.nodes)
    leaves = [i for i, n in enumerate(nodes) if n.proof is not None][:refuse]
    before = len(nodes)
    plain.nodes = nodes
    result = repair(problem, dense, config, plain,
                    lambda p, n, par: _RefuseLeaves(LeafConfirmer(stored, p, n, par), leaves),
                    np.inf)
    assert result.status == "certified" and result.rejected == len(leaves)
    assert len(result.nodes) >= before + 2 * len(leaves)
    for leaf in leaves:  # each refused leaf is now split, not proved
        assert result.nodes[leaf].proof is None and result.nodes[leaf].input_split is not None
    report = check_proofs(stored, [problem_certificate(problem, result.nodes)],
                          reproduce=False)
    assert report.valid, report.errors
