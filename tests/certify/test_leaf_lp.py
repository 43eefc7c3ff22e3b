"""Fully split sub-domains: the LP equals the exact minimum and its dual bound is sound."""

from __future__ import annotations

import numpy as np
import pytest
from certify_instances import tiny_network

from nobound.certify.leaf_lp import solve_leaf
from nobound.exact import dense_network, minimise_output


@pytest.mark.parametrize("seed", range(6))
def test_linear_region_lp_matches_milp_and_bound_is_sound(seed: int) -> None:
    model = tiny_network(seed, (3, 5, 5, 2))
    net = dense_network(model, (3,))
    rng = np.random.default_rng(seed)
    lower, upper = -np.ones(3) * 0.6, np.ones(3) * 0.6
    pattern_point = rng.uniform(lower, upper)
    signs = [np.where(z >= 0, 1, -1).astype(np.int8)
             for z in net.pre_activations(pattern_point[None])[:-1]]
    signs = [s[0] for s in signs]
    row = np.array([1.0, -1.0])
    splits = dict(zip(net.relu_layers, signs, strict=True))
    exact = minimise_output(model, lower, upper, row, splits=splits)
    for margin in (-0.05, 0.05):
        offset = np.array([margin - exact.value])
        solution = solve_leaf(net, lower, upper, row[None], offset,
                              [s > 0 for s in signs], signs)
        # t* = min over the box of max(r(x), max_j −s_j z_j(x)): same sign as the minimum
        # of r over the region, and between it and zero
        if margin > 0:
            assert 0 < solution.value <= margin + 1e-9
            # sound: never above the true minimum of the row on the region (up to float64
            # round-off of the affine maps, ~1e-16 here)
            assert 0 < solution.bound <= exact.attained + offset[0] + 1e-12
        else:
            assert margin - 1e-9 <= solution.value <= 0
            assert solution.bound == -np.inf
            x = solution.point
            assert np.all(x >= lower - 1e-9) and np.all(x <= upper + 1e-9)
            values = net.pre_activations(x[None])
            assert (row @ values[-1][0]) + offset[0] <= 1e-7
            for z, s_k in zip(values[:-1], signs, strict=True):
                assert np.all(s_k * z[0] >= -1e-7)
