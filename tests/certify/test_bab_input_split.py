"""Input-domain splitting: sound box bounds, decisions equal to the MILP's, checkable trees."""

from __future__ import annotations

import copy

import numpy as np
from certify_instances import near_boundary_problem, tiny_network
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.certify.bab import BabConfig, branch_and_bound
from nobound.certify.certificate import Certificate, model_fingerprint, problem_certificate
from nobound.certify.checker import check_certificate
from nobound.certify.input_split import bound_boxes, split_dimension
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


def _check(model, problem, nodes, size):
    certificate = Certificate(model_fingerprint(model), (size,),
                              [problem_certificate(problem, nodes)])
    return check_certificate(model, certificate, [problem])


def test_decisions_match_milp_and_the_trees_check() -> None:
    checked = 0
    for seed in range(6):
        model = tiny_network(seed, (3, 10, 10, 2))
        centre = np.random.default_rng(seed).uniform(-1, 1, 3)
        for margin in (0.01, -0.01):
            problem, attained = near_boundary_problem(model, centre, 0.5,
                                                      np.array([1.0, -1.0]), margin)
            result = branch_and_bound(problem, dense_network(model, (3,)),
                                      BabConfig(domain="input", max_nodes=20_000))
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
    from nobound.certify.beta_crown import tighten_intermediate
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
