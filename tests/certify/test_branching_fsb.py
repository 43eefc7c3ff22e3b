"""Filtered smart branching: candidates are splittable, and the choice has the best worse
child among them (so it is never worse than BaBSR's own choice, which is a candidate)."""

from __future__ import annotations

import numpy as np
from certify_instances import near_boundary_problem, tiny_network

from nobound.certify.beta_crown import SplitDomains, bound_and_gradient, initial_multipliers
from nobound.certify.branching import choose_neurons, clamp_to_splits, unstable_mask
from nobound.certify.fsb import candidates, choose_by_children
from nobound.exact import dense_network
from nobound.exact.intervals import interval_bounds


def worse_child(problem, dense, bounds, signs, n, choice) -> float:
    """min over the two children of split ``choice`` of sub-domain n (DeepPoly slopes)."""
    k, neuron = choice
    values = []
    for sign in (1, -1):
        child = [s[n:n + 1].copy() for s in signs]
        child[k][0, neuron] = sign
        clamped = clamp_to_splits([(lo[n:n + 1], hi[n:n + 1]) for lo, hi in bounds], child)
        domains = SplitDomains([lo for lo, _ in clamped], [hi for _, hi in clamped], child,
                               problem.lower, problem.upper)
        value, _ = bound_and_gradient(dense, domains, problem.spec[None], problem.offset[None],
                                      initial_multipliers(domains, 1), gradient=False)
        values.append(float(value.max()))
    return min(values)


def test_fsb_choice_is_unstable_and_at_least_as_good_as_babsr() -> None:
    compared = 0
    for seed in range(8):
        model = tiny_network(seed, (3, 12, 12, 2))
        dense = dense_network(model, (3,))
        centre = np.random.default_rng(seed).uniform(-1, 1, 3)
        problem, _ = near_boundary_problem(model, centre, 0.6, np.array([1.0, -1.0]), 0.01)
        hidden = interval_bounds(dense, problem.lower, problem.upper)[:-1]
        bounds = [(lo[None], hi[None]) for lo, hi in hidden]
        signs = [np.zeros((1, lo.size), np.int8) for lo, _ in hidden]
        if not any(unstable_mask(b, s).any() for b, s in zip(bounds, signs, strict=True)):
            continue
        rows = problem.spec[:1]
        fsb = choose_by_children(problem, dense, bounds, signs, None, rows, k=3)[0]
        babsr = choose_neurons(dense, bounds, signs, rows, "babsr")[0]
        assert fsb is not None
        k, neuron = fsb
        assert unstable_mask(bounds[k], signs[k])[0, neuron]
        assert worse_child(problem, dense, bounds, signs, 0, fsb) >= \
            worse_child(problem, dense, bounds, signs, 0, babsr) - 1e-12
        compared += 1
    assert compared


def test_candidates_skip_unscored_neurons_and_keep_order() -> None:
    tables = [np.array([[0.5, -np.inf, 2.0]]), np.array([[1.0, -np.inf]])]
    assert candidates(tables, 0, 3) == [(0, 2), (1, 0), (0, 0)]
    assert candidates(tables, 0, 10) == [(0, 2), (1, 0), (0, 0)]
