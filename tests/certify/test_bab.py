"""Branch and bound directly: both sub-problem relaxations, both branching rules, the tree."""

from __future__ import annotations

import numpy as np
import pytest
from certify_instances import near_boundary_problem, tiny_network

from nobound.certify.bab import BabConfig, branch_and_bound
from nobound.exact import dense_network


@pytest.mark.parametrize("method, branching", [("deeppoly", "intercept"),
                                               ("alpha-crown", "babsr")])
@pytest.mark.parametrize("seed", [0, 5])
def test_decisions_match_milp_and_trees_are_complete(method, branching, seed) -> None:
    model = tiny_network(seed, (3, 8, 8, 2))
    centre = np.random.default_rng(5).uniform(-1, 1, 3)
    config = BabConfig(method=method, branching=branching, batch_size=8, max_nodes=3000)
    for margin in (0.01, -0.01):
        problem, attained = near_boundary_problem(model, centre, 0.5, np.array([1.0, -1.0]),
                                                  margin)
        result = branch_and_bound(problem, dense_network(model, (3,)), config)
        assert result.status == ("certified" if margin > 0 else "falsified")
        if margin > 0:
            assert attained > 0
            internal = [n for n in result.nodes if n.split is not None]
            leaves = [n for n in result.nodes if n.proof is not None]
            assert len(leaves) == len(internal) + 1  # a full binary tree
            assert all(n.children is not None for n in internal)
            assert all(leaf.proof.bound > 0 or leaf.proof.method == "empty"
                       for leaf in leaves)
        else:
            values = problem.row_values(problem.outputs(result.counterexample.input[None]))
            assert np.all(values <= 0)


def test_batch_sizer_keeps_the_fastest_size_measured() -> None:
    from nobound.certify.bab import _BatchSizer

    sizer = _BatchSizer(32)
    for size, seconds in ((1, 1.0), (2, 0.5), (4, 0.6)):
        assert sizer.current == size
        sizer.record(size, seconds)
    assert sizer.current == 2  # 4 was slower per sub-problem: back to 2, exploring stops
    sizer.record(2, 0.5)
    assert sizer.current == 2
    sizer.record(2, 5.0)  # 2 became slow (average 1.85): 4's measurement (0.6) wins now
    assert sizer.current == 4
    sizer.record(1, 0.1)  # a size other than the current one is ignored
    assert sizer.current == 4
