"""Input-domain splitting: sound box bounds, decisions equal to the MILP's, checkable trees."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from certify_instances import near_boundary_problem, tiny_network
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.certify.bab import BabConfig, branch_and_bound
from nobound.certify.certificate import Certificate, model_fingerprint, problem_certificate
from nobound.certify.checker import check_certificate
from nobound.certify.input_split import (
    _halves_everywhere,
    _kept_halves,
    bound_boxes,
    input_split_search,
    split_dimension,
)
from nobound.exact import dense_network, minimise_output


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), alpha_steps=st.sampled_from([0, 5]))
def test_box_bounds_hold_on_samples_vertices_and_the_milp(seed, alpha_steps) -> None:
    rng = np.random.default_rng(seed)
    model = tiny_network(seed, (2, 8, 8, 3))
    dense = dense_network(model, (2,))
    centres = rng.uniform(-1, 1, (3, 2))
    widths = rng.uniform(0.01, 1.0, (3, 2))
    lower, upper = centres - widths, centres + widths
    spec = rng.normal(size=(2, 3))
    offset = rng.normal(size=2)
    bound, coefficients, _ = bound_boxes(dense, lower, upper, spec, offset, alpha_steps)
    assert coefficients.shape == (3, 2, 2)
    for n in range(3):
        grid = np.stack(np.meshgrid(*[np.linspace(lower[n, d], upper[n, d], 41)
                                      for d in range(2)]), -1).reshape(-1, 2)
        values = dense.forward(grid) @ spec.T + offset
        assert np.all(bound[n] <= values.min(axis=0) + 1e-9)
        for r in range(2):
            exact = minimise_output(model, lower[n], upper[n], spec[r])
            assert bound[n, r] <= exact.value + offset[r] + 1e-7


def test_split_dimension_is_the_largest_coefficient_times_width() -> None:
    coefficients = np.array([[1.0, -3.0, 0.5], [0.1, 0.1, 0.1]])
    lower = np.zeros((2, 3))
    upper = np.array([[1.0, 0.2, 4.0], [1.0, 5.0, 1.0]])
    assert split_dimension(coefficients, lower, upper).tolist() == [2, 1]


def test_the_bounds_rule_keeps_the_halves_that_leave_least_to_prove() -> None:
    """Every box's halves along each dimension, bounded separately, against the pair
    :func:`_kept_halves` keeps from the one batched call: the kept pair is the brute-force
    best (most halves proved, then least left to prove, Σ min(0, value) with each value at
    least the parent's), the halves cover the box, and a dimension without width is never
    kept while another has some."""
    from nobound.certify.problem import PROOF_TOLERANCE

    rng = np.random.default_rng(3)
    model = tiny_network(3, (3, 10, 10, 2))
    dense = dense_network(model, (3,))
    lower = rng.uniform(-1, 0, (6, 3))
    upper = lower + rng.uniform(0.2, 1.0, (6, 3))
    upper[5, 1] = lower[5, 1]  # no width along 1
    spec = np.array([[1.0, -1.0]])
    parent_bound = bound_boxes(dense, lower, upper, spec, np.zeros(1), 0)[0][:, 0]
    offset = -np.median(parent_bound)  # some halves proved, some not
    parent_value = parent_bound + offset
    halves_lower, halves_upper = _halves_everywhere(lower, upper)
    bound, _, _ = bound_boxes(dense, halves_lower, halves_upper, spec, np.array([offset]), 0)
    value = np.maximum(bound[:, 0], np.tile(parent_value, 6))
    kept, chosen = _kept_halves(bound[:, 0], value, lower, upper)
    assert chosen[5] != 1
    proved_any = False
    for p in range(6):
        scores = []
        for d in range(3):
            middle = (lower[p, d] + upper[p, d]) / 2
            below, above = upper[p].copy(), lower[p].copy()
            below[d] = above[d] = middle
            pair, _, _ = bound_boxes(dense, np.stack([lower[p], above]),
                                     np.stack([below, upper[p]]), spec,
                                     np.array([offset]), 0)
            pair = pair[:, 0]
            proved = int(np.sum(pair > PROOF_TOLERANCE))
            proved_any |= proved > 0
            left = np.minimum(np.maximum(pair, parent_value[p]), 0).sum()
            scores.append((proved, left) if upper[p, d] > lower[p, d] else (-1, -np.inf))
            if d == chosen[p]:
                assert np.allclose(bound[kept[[p, p + 6]], 0], pair, atol=1e-12)
                assert np.array_equal(halves_lower[kept[p]], lower[p])
                assert np.array_equal(halves_upper[kept[p + 6]], upper[p])
                assert halves_upper[kept[p], d] == halves_lower[kept[p + 6], d] == middle
        assert scores[chosen[p]][0] == max(s[0] for s in scores)
        assert scores[chosen[p]][1] == max(s[1] for s in scores if s[0] == scores[chosen[p]][0])
    assert proved_any


def test_the_bounds_rule_needs_fewer_boxes_in_its_tree() -> None:
    """On a problem that needs splitting, keeping the best-bounded pair of halves gives a
    smaller tree than the gradient estimate (the point of paying n₀ bounds per split)."""
    model = tiny_network(1, (4, 16, 16, 16, 2))
    problem, _ = near_boundary_problem(model, np.zeros(4), 0.6, np.array([1.0, -1.0]), 0.01)
    dense = dense_network(model, (4,))
    trees = {rule: input_split_search(problem, dense, dimension_rule=rule)
             for rule in ("bounds", "gradient")}
    assert all(found["status"] == "certified" for found in trees.values())
    assert len(trees["bounds"]["nodes"]) < len(trees["gradient"]["nodes"])


def _check(model, problem, nodes, size):
    certificate = Certificate(model_fingerprint(model), (size,),
                              [problem_certificate(problem, nodes)])
    return check_certificate(model, certificate, [problem])


@pytest.mark.parametrize("rule", ["bounds", "gradient"])
def test_decisions_match_milp_and_the_trees_check(rule) -> None:
    checked = 0
    for seed in range(6):
        model = tiny_network(seed, (3, 10, 10, 2))
        centre = np.random.default_rng(seed).uniform(-1, 1, 3)
        for margin in (0.01, -0.01):
            problem, attained = near_boundary_problem(model, centre, 0.5,
                                                      np.array([1.0, -1.0]), margin)
            result = branch_and_bound(problem, dense_network(model, (3,)),
                                      BabConfig(domain="input", max_nodes=20_000,
                                                input_branching=rule))
            assert result.status == ("certified" if margin > 0 else "falsified")
            if margin < 0:
                values = problem.row_values(problem.outputs(result.counterexample.input[None]))
                assert np.all(values <= 0)
                continue
            report = _check(model, problem, result.nodes, 3)
            assert report.valid, report.errors[:3]
            checked += len(result.nodes) > 1
            split = next((i for i, n in enumerate(result.nodes) if n.input_split), None)
            if split is None:
                continue
            outside = copy.deepcopy(result.nodes)  # a cut outside the box covers nothing
            outside[split].input_split = (outside[split].input_split[0], 1e6)
            assert not _check(model, problem, outside, 3).valid
            narrowed = copy.deepcopy(result.nodes)  # halves of a smaller box: not a cover
            leaf = next(n for n in narrowed if n.proof is not None)
            leaf.proof = None
            assert not _check(model, problem, narrowed, 3).valid
    assert checked  # some instances needed splits


def test_auto_domain_splits_inputs_only_for_small_inputs() -> None:
    model = tiny_network(0, (3, 8, 8, 2))
    problem, _ = near_boundary_problem(model, np.zeros(3), 0.5, np.array([1.0, -1.0]), 0.01)
    result = branch_and_bound(problem, dense_network(model, (3,)), BabConfig(domain="auto"))
    assert result.status == "certified"
    assert all(n.split is None for n in result.nodes)  # input splits only



def test_the_checker_bounds_each_input_split_leaf_as_the_search_does() -> None:
    """An input split's halves are bounded on their own boxes, as the search bounds each box
    (interval bounds, then one back-substitution per layer), not through their parents'
    bounds — which change the relaxations the search's α was optimised for (on ACAS Xu
    ``1_2`` property 1 that turned a leaf the search proved by 0.073 into −5.99). So the
    checker's bounds of every leaf are the search's up to round-off, its rigorous value
    reproduces the search's bound, and sampled points of the leaf's box never go below it."""
    from nobound.certify.beta_crown_intermediate import tighten_intermediate
    from nobound.certify.checker import checked_network, leaf_value, recorded_alphas
    from nobound.certify.input_split import input_split_search, interval_domains
    from nobound.certify.leaf_confirm import LeafConfirmer

    leaves = 0
    for seed in range(3):
        model = tiny_network(seed, (3, 12, 12, 12, 12, 2))
        dense = dense_network(model, (3,))
        centre = np.random.default_rng(seed).uniform(-1, 1, 3)
        problem, _ = near_boundary_problem(model, centre, 0.5, np.array([1.0, -1.0]), 0.02)
        found = input_split_search(problem, dense, max_boxes=20_000)
        assert found["status"] == "certified"
        nodes = found["nodes"]
        parents = {int(c): i for i, n in enumerate(nodes) if n.children for c in n.children}
        stored = checked_network(model, (3,))
        confirmer = LeafConfirmer(stored, problem, nodes, parents)
        rng = np.random.default_rng(seed)
        for index in parents:
            proof = nodes[index].proof
            if proof is None:
                continue
            bounds, _, box = confirmer._derive(index)
            search = tighten_intermediate(dense, interval_domains(dense, box[0][None],
                                                                  box[1][None]), steps=0)
            for (lower, upper), low, high in zip(bounds, search.lower, search.upper,
                                                 strict=True):
                # the search also back-substitutes neurons unstable in other boxes of its
                # batch, so the checker's bounds may be looser, never tighter
                assert np.all(lower <= low[0] + 1e-9) and np.all(upper >= high[0] - 1e-9)
            value = leaf_value(stored, box, bounds, np.atleast_2d(problem.spec),
                               problem.offset, np.asarray(proof.row_weights),
                               None, recorded_alphas(proof.alphas, stored.hidden_sizes))
            assert value >= proof.bound - 1e-9 * max(1.0, abs(proof.bound))
            points = box[0] + rng.random((64, 3)) * (box[1] - box[0])
            reached = problem.row_values(problem.outputs(points)) @ proof.row_weights
            assert np.all(reached >= value)
            leaves += 1
        assert _check(model, problem, nodes, 3).valid
    assert leaves  # the trees had split leaves
