"""The checker's stacks of leaves: the same verdicts, messages, bounds and leaf values as
one leaf at a time, tampered leaves inside a stack included."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from certify_instances import near_boundary_problem, tiny_network

from nobound.certify import checker
from nobound.certify.bab import BabConfig, branch_and_bound
from nobound.certify.certificate import problem_certificate
from nobound.certify.checker import (
    check_proofs,
    leaf_value,
    leaf_values,
    node_bounds,
    recorded_alphas,
)
from nobound.certify.stored_network import stored_network
from nobound.exact import dense_network

# (seed, radius, margin) of an instance whose certified tree has 25–70 leaves
TREES = {("input", "deeppoly"): (0, 1.0, 0.05), ("relu", "deeppoly"): (2, 0.35, 0.01),
         ("relu", "beta-crown"): (0, 0.8, 0.01)}


def _tree(domain: str, method: str = "deeppoly") -> tuple:
    """A certified split tree with many leaves: input splits or ReLU splits."""
    seed, radius, margin = TREES[domain, method]
    model = tiny_network(seed, (3, 12, 12, 12, 2))
    centre = np.random.default_rng(seed).uniform(-1, 1, 3)
    problem, _ = near_boundary_problem(model, centre, radius, np.array([1.0, -1.0]), margin)
    result = branch_and_bound(problem, dense_network(model, (3,)),
                              BabConfig(domain=domain, method=method, batch_size=8,
                                        max_nodes=4000))
    assert result.status == "certified"
    return stored_network(model, (3,)), problem, result.nodes


def _leaves(nodes: list) -> list[int]:
    return [i for i, node in enumerate(nodes) if node.proof is not None]


def _check(stored, problem, nodes, monkeypatch: pytest.MonkeyPatch, most: int):
    monkeypatch.setattr(checker, "MOST_STACKED", most)
    return check_proofs(stored, [problem_certificate(problem, nodes)])


@pytest.mark.parametrize("domain, method", [("input", "deeppoly"), ("relu", "deeppoly"),
                                            ("relu", "beta-crown")])
def test_stacks_give_the_verdicts_of_one_leaf_at_a_time(domain: str, method: str,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """Honest and tampered trees: the same report, message for message, whether the leaves
    are checked one at a time or in stacks (a tampered leaf in the middle of a stack is
    rejected, its neighbours are not)."""
    stored, problem, nodes = _tree(domain, method)
    leaves = _leaves(nodes)
    assert len(leaves) >= 6
    one = _check(stored, problem, nodes, monkeypatch, 1)
    stacked = _check(stored, problem, nodes, monkeypatch, 256)
    assert one.valid and stacked.valid
    assert (one.leaves, one.nodes) == (stacked.leaves, stacked.nodes) == (len(leaves),
                                                                          len(nodes))
    tampered = copy.deepcopy(nodes)
    middle = leaves[len(leaves) // 2]
    tampered[middle].proof.row_weights = [0.0]          # proves nothing: bound ≤ 0
    tampered[leaves[1]].proof.alphas = [[1.5] * 12]      # α outside [0, 1]
    if method == "beta-crown" or domain == "relu":
        tampered[leaves[-2]].proof.betas = [(0, 0, 1.0)]  # β on a neuron not split there
    one = _check(stored, problem, tampered, monkeypatch, 1)
    stacked = _check(stored, problem, tampered, monkeypatch, 256)
    assert not one.valid and not stacked.valid
    assert one.errors == stacked.errors
    assert any(f"node {middle}:" in error and "does not prove" in error
               for error in stacked.errors)
    assert any(f"node {leaves[1]}:" in error for error in stacked.errors)
    flagged = {int(error.split("node ")[1].split(":")[0]) for error in stacked.errors}
    assert flagged <= {middle, leaves[1], leaves[-2]}


@pytest.mark.parametrize("domain", ["input", "relu"])
def test_stacked_bounds_and_values_are_each_leafs_own(domain: str) -> None:
    """node_bounds and leaf_values of a stack equal those of each leaf alone (to the
    rounding of differently shaped products): a stack back-substitutes the neurons unstable
    in any of its leaves, and each leaf keeps only its own unstable ones."""
    stored, problem, nodes = _tree(domain)
    from nobound.certify.leaf_confirm import LeafConfirmer

    parents = {int(c): i for i, n in enumerate(nodes) if n.children for c in n.children}
    confirmer = LeafConfirmer(stored, problem, nodes, parents)
    leaves = _leaves(nodes)[:40]
    boxes, signs, alone, parent_bounds = [], [], [], []
    for index in leaves:
        bounds, leaf_signs, box = confirmer._derive(index)
        parent = confirmer._derive(parents[index])[0] if domain == "relu" else None
        if domain == "relu" and (nodes[index].inherit or not parent):
            continue
        boxes.append(box)
        signs.append(leaf_signs)
        parent_bounds.append(parent)
        alone.append(node_bounds(stored, box, leaf_signs, parent, interval_chain=domain ==
                                 "input"))
    assert len(alone) >= 4
    layers = range(stored.num_hidden_layers)
    stack_box = tuple(np.stack([b[side] for b in boxes]) for side in (0, 1))
    stack_signs = [np.stack([s[k] for s in signs]) for k in layers]
    stack_parent = None if domain == "input" else [
        tuple(np.stack([p[k][side] for p in parent_bounds]) for side in (0, 1)) for k in layers]
    stacked = node_bounds(stored, stack_box, stack_signs, stack_parent,
                          interval_chain=domain == "input")
    unstable_sets = set()
    for j, own in enumerate(alone):
        for k in layers:
            for side in (0, 1):
                np.testing.assert_allclose(stacked[k][side][j], own[k][side], rtol=1e-12,
                                           atol=1e-12)
            unstable_sets.add((k, tuple(np.flatnonzero((own[k][0] < 0) & (own[k][1] > 0)))))
    assert len(unstable_sets) > stored.num_hidden_layers  # the leaves' unstable sets differ
    spec, offset = np.atleast_2d(problem.spec), problem.offset
    weights = np.ones((len(alone), 1))
    values = leaf_values(stored, stack_box, stacked, spec, offset, weights, None, None,
                         np.zeros(len(alone), bool), np.zeros(len(alone), bool))
    for j, own in enumerate(alone):
        value = leaf_value(stored, boxes[j], own, spec, offset, np.ones(1))
        assert values[j] == pytest.approx(value, rel=1e-10, abs=1e-12)
    # recorded α per leaf (nan: that leaf records none on the layer) as one stack
    proofs = [nodes[i].proof for i in leaves[:len(alone)]]
    if all(p.alphas for p in proofs):
        alphas = [recorded_alphas(p.alphas, stored.hidden_sizes) for p in proofs]
        stacked_alphas = [np.stack([a[k] if a[k] is not None else
                                    np.full(stored.hidden_sizes[k], np.nan) for a in alphas])
                          for k in layers]
        values = leaf_values(stored, stack_box, stacked, spec, offset, weights, None,
                             stacked_alphas, np.ones(len(alone), bool),
                             np.zeros(len(alone), bool))
        for j, own in enumerate(alone):
            value = leaf_value(stored, boxes[j], own, spec, offset, np.ones(1), None,
                               alphas[j])
            assert values[j] == pytest.approx(value, rel=1e-10, abs=1e-12)


def test_a_deadline_makes_the_first_stack_one_leaf(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a deadline the stacks grow from one leaf by the measured time per leaf, so
    the check cannot run a whole stack past a deadline it was close to."""
    stored, problem, nodes = _tree("input")
    sizes: list[int] = []
    original = checker._check_leaves

    def recording(net, leaves, *args, **kwargs):
        sizes.append(len(leaves))
        return original(net, leaves, *args, **kwargs)

    monkeypatch.setattr(checker, "_check_leaves", recording)
    assert check_proofs(stored, [problem_certificate(problem, nodes)],
                        deadline=float("inf")).valid
    assert sizes[0] == min(checker.MOST_STACKED, len(_leaves(nodes)))
    sizes.clear()
    import time
    assert check_proofs(stored, [problem_certificate(problem, nodes)],
                        deadline=time.perf_counter() + 3600).valid
    assert sizes[0] == 1 and max(sizes) > 1


@pytest.mark.parametrize("domain", ["input", "relu"])
def test_the_confirmers_refused_leaves_are_those_it_refuses_one_at_a_time(domain: str
                                                                          ) -> None:
    """LeafConfirmer.refused (one stacked check of the tree, before a repair) names exactly
    the leaves its per-leaf proves() refuses."""
    from nobound.certify.leaf_confirm import LeafConfirmer

    stored, problem, nodes = _tree(domain)
    tampered = copy.deepcopy(nodes)
    leaves = _leaves(nodes)
    tampered[leaves[2]].proof.row_weights = [0.0]
    tampered[leaves[-3]].proof.alphas = [[-0.5] * 12]
    parents = {int(c): i for i, n in enumerate(tampered) if n.children for c in n.children}
    refused = LeafConfirmer(stored, problem, tampered, parents).refused()
    one_by_one = LeafConfirmer(stored, problem, tampered, parents)
    assert refused == [i for i in leaves if not one_by_one.proves(i, tampered[i].proof)]
    assert refused == sorted({leaves[2], leaves[-3]})
    assert LeafConfirmer(stored, problem, nodes, parents).refused() == []
