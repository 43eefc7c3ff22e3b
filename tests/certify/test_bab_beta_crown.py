"""beta-CROWN (split constraints inside the bound): sound for any α ∈ [0, 1] and β ≥ 0,
exact gradient, tighter than DeepPoly after optimisation, and checkable proofs."""

from __future__ import annotations

import numpy as np
import pytest
from certify_instances import near_boundary_problem, tiny_network
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.certify.bab import BabConfig, branch_and_bound
from nobound.certify.beta_crown import (
    Multipliers,
    SplitDomains,
    bound_and_gradient,
    initial_multipliers,
    optimise,
)
from nobound.certify.certificate import Certificate, model_fingerprint, problem_certificate
from nobound.certify.checker import check_certificate
from nobound.exact import dense_network, minimise_output
from nobound.exact.intervals import interval_bounds

SIZES = (3, 7, 6, 2)


def split_instance(seed: int, splits_wanted: int):
    """(model, dense, box, signs per hidden layer, IBP bounds valid on the split region)."""
    rng = np.random.default_rng(seed)
    model = tiny_network(seed, SIZES)
    dense = dense_network(model, (SIZES[0],))
    centre = rng.uniform(-1, 1, SIZES[0])
    lower, upper = centre - 0.6, centre + 0.6
    free = interval_bounds(dense, lower, upper)
    signs = [np.zeros(n, np.int8) for n in SIZES[1:-1]]
    unstable = [(k, i) for k in range(len(signs)) for i in range(SIZES[k + 1])
                if free[k][0][i] < 0 < free[k][1][i]]
    for pick in rng.permutation(len(unstable))[:splits_wanted]:
        k, i = unstable[pick]
        signs[k][i] = rng.choice([-1, 1])
    splits = {layer: s for layer, s in zip(dense.relu_layers, signs, strict=True)}
    bounds = interval_bounds(dense, lower, upper, splits)
    return model, dense, (lower, upper), signs, bounds, splits


def domains_of(box, signs, bounds, xp=np) -> SplitDomains:
    hidden = len(signs)
    return SplitDomains([xp.asarray(bounds[k][0][None]) for k in range(hidden)],
                        [xp.asarray(bounds[k][1][None]) for k in range(hidden)],
                        [xp.asarray(s[None]) for s in signs], xp.asarray(box[0]),
                        xp.asarray(box[1]))


def random_multipliers(rng, signs, rows: int, scale: float) -> Multipliers:
    alpha = [rng.uniform(0, 1, (1, rows, s.size)) for s in signs]
    beta = [rng.exponential(scale, (1, rows, s.size)) * (s != 0) for s in signs]
    return Multipliers(alpha, beta)


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), splits=st.integers(0, 5),
       beta_scale=st.sampled_from([0.0, 0.1, 1.0, 100.0]))
def test_any_alpha_and_beta_give_a_bound_below_the_exact_split_minimum(seed, splits,
                                                                       beta_scale) -> None:
    model, dense, box, signs, bounds, split_map = split_instance(seed, splits)
    if any(np.any(lo > hi) for lo, hi in bounds[:-1]):
        return  # the splits leave nothing; nothing to bound
    row = np.array([[1.0, -1.0], [-0.5, 2.0]])
    rng = np.random.default_rng(seed)
    multipliers = random_multipliers(rng, signs, 2, beta_scale)
    value, _ = bound_and_gradient(dense, domains_of(box, signs, bounds), row[None],
                                  np.zeros((1, 2)), multipliers, gradient=False)
    for r in range(2):
        exact = minimise_output(model, box[0], box[1], row[r], splits=split_map)
        if np.isfinite(exact.value):
            assert value[0, r] <= exact.value + 1e-7
    # sampled points and box vertices that satisfy the splits
    corners = np.array(np.meshgrid(*np.stack(box).T)).reshape(SIZES[0], -1).T
    points = np.concatenate([corners, rng.uniform(box[0], box[1], (4000, SIZES[0]))])
    hidden = dense.pre_activations(points)
    inside = np.ones(len(points), bool)
    for k, s in enumerate(signs):
        inside &= np.all(s * hidden[k] >= 0, axis=1)
    outputs = hidden[-1][inside] @ row.T
    if len(outputs):
        assert np.all(value[0] <= outputs.min(axis=0) + 1e-9)


def test_gradient_matches_finite_differences() -> None:
    _, dense, box, signs, bounds, _ = split_instance(3, 4)
    domains = domains_of(box, signs, bounds)
    rows = np.array([[[1.0, -1.0]]])
    multipliers = random_multipliers(np.random.default_rng(0), signs, 1, 1.0)
    _, gradient = bound_and_gradient(dense, domains, rows, np.zeros((1, 1)), multipliers)
    step = 1e-6
    for name in ("alpha", "beta"):
        for k, values in enumerate(getattr(multipliers, name)):
            numeric = np.zeros_like(values)
            for index in np.ndindex(values.shape):
                values[index] += step
                up, _ = bound_and_gradient(dense, domains, rows, np.zeros((1, 1)),
                                           multipliers, gradient=False)
                values[index] -= 2 * step
                down, _ = bound_and_gradient(dense, domains, rows, np.zeros((1, 1)),
                                             multipliers, gradient=False)
                values[index] += step
                numeric[index] = (up - down).sum() / (2 * step)
            # α only matters on unstable neurons, β only on split ones: both exact there
            np.testing.assert_allclose(getattr(gradient, name)[k], numeric, atol=1e-6)


def test_optimisation_only_raises_the_bound_and_stays_sound() -> None:
    raised = 0
    for seed in range(6):
        model, dense, box, signs, bounds, split_map = split_instance(seed, 3)
        if any(np.any(lo > hi) for lo, hi in bounds[:-1]):
            continue
        domains = domains_of(box, signs, bounds)
        rows = np.array([[[1.0, -1.0]]])
        start, _ = bound_and_gradient(dense, domains, rows, np.zeros((1, 1)),
                                      initial_multipliers(domains, 1), gradient=False)
        best, chosen = optimise(dense, domains, rows, np.zeros((1, 1)), steps=30)
        assert best[0, 0] >= start[0, 0]
        raised += best[0, 0] > start[0, 0] + 1e-6
        assert all(np.all((a >= 0) & (a <= 1)) for a in chosen.alpha)
        assert all(np.all(b >= 0) for b in chosen.beta)
        exact = minimise_output(model, box[0], box[1], rows[0, 0], splits=split_map)
        assert best[0, 0] <= exact.value + 1e-7
    assert raised  # the optimiser does something on these instances


def test_same_numbers_on_every_backend(xp) -> None:
    _, dense, box, signs, bounds, _ = split_instance(1, 3)
    rows = np.array([[[1.0, -1.0]]])
    multipliers = random_multipliers(np.random.default_rng(1), signs, 1, 1.0)
    expected, grads = bound_and_gradient(dense, domains_of(box, signs, bounds), rows,
                                         np.zeros((1, 1)), multipliers)
    moved = Multipliers([xp.asarray(a) for a in multipliers.alpha],
                        [xp.asarray(b) for b in multipliers.beta])
    value, moved_grads = bound_and_gradient(dense, domains_of(box, signs, bounds, xp),
                                            xp.asarray(rows), xp.asarray(np.zeros((1, 1))),
                                            moved)
    from nobound.backend import to_numpy

    np.testing.assert_allclose(to_numpy(value), expected, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(moved_grads.beta[0]), grads.beta[0], rtol=1e-12)


@pytest.mark.parametrize("branching", ["babsr", "fsb"])
@pytest.mark.parametrize("intermediate", ["inherit", "recompute"])
def test_beta_bab_decisions_match_milp(branching, intermediate) -> None:
    for seed in (0, 5):
        model = tiny_network(seed, (3, 8, 8, 2))
        centre = np.random.default_rng(5).uniform(-1, 1, 3)
        config = BabConfig(method="beta-crown", branching=branching, batch_size=8,
                           max_nodes=3000, intermediate=intermediate)
        for margin in (0.01, -0.01):
            problem, _ = near_boundary_problem(model, centre, 0.5, np.array([1.0, -1.0]),
                                               margin)
            result = branch_and_bound(problem, dense_network(model, (3,)), config)
            assert result.status == ("certified" if margin > 0 else "falsified")


def checkable_proof():
    """(model, problem, nodes) of a beta-CROWN search whose proofs use some β > 0."""
    for seed in range(40):
        model = tiny_network(seed, (3, 8, 8, 2))
        centre = np.random.default_rng(seed).uniform(-1, 1, 3)
        problem, _ = near_boundary_problem(model, centre, 0.5, np.array([1.0, -1.0]), 0.02)
        config = BabConfig(method="beta-crown", intermediate="recompute",
                           optimise_alpha=False, batch_size=4, max_nodes=2000)
        result = branch_and_bound(problem, dense_network(model, (3,)), config)
        assert result.status == "certified"
        if any(n.proof is not None and n.proof.betas for n in result.nodes):
            return model, problem, result.nodes
    raise RuntimeError("no proof used a split multiplier")


def test_checker_accepts_beta_proofs_and_rejects_tampered_multipliers() -> None:
    model, problem, nodes = checkable_proof()

    def certificate(tree):
        return Certificate(model_fingerprint(model), (3,), [problem_certificate(problem, tree)])

    report = check_certificate(model, certificate(nodes), [problem])
    assert report.valid, report.errors
    leaf = next(i for i, n in enumerate(nodes) if n.proof is not None and n.proof.betas)
    import copy

    for tamper in (lambda b: -abs(b) - 1.0, lambda b: b + 50.0):
        tampered = copy.deepcopy(nodes)
        k, neuron, beta = tampered[leaf].proof.betas[0]
        tampered[leaf].proof.betas[0] = (k, neuron, tamper(beta))
        assert not check_certificate(model, certificate(tampered), [problem]).valid


@settings(max_examples=15)
@given(seed=st.integers(0, 10_000), splits=st.integers(0, 4))
def test_tightened_intermediate_bounds_hold_and_only_shrink(seed, splits) -> None:
    from nobound.certify.beta_crown_intermediate import tighten_intermediate

    _, dense, box, signs, bounds, _ = split_instance(seed, splits)
    if any(np.any(lo > hi) for lo, hi in bounds[:-1]):
        return
    domains = domains_of(box, signs, bounds)
    tight = tighten_intermediate(dense, domains, steps=10)
    rng = np.random.default_rng(seed)
    corners = np.array(np.meshgrid(*np.stack(box).T)).reshape(SIZES[0], -1).T
    points = np.concatenate([corners, rng.uniform(box[0], box[1], (4000, SIZES[0]))])
    hidden = dense.pre_activations(points)
    inside = np.ones(len(points), bool)
    for k, s in enumerate(signs):
        inside &= np.all(s * hidden[k] >= 0, axis=1)
    for k in range(len(signs)):
        assert np.all(tight.lower[k] >= domains.lower[k])
        assert np.all(tight.upper[k] <= domains.upper[k])
        values = hidden[k][inside]
        assert np.all(values >= tight.lower[k][0] - 1e-9)
        assert np.all(values <= tight.upper[k][0] + 1e-9)


def _check(model, problem, tree):
    certificate = Certificate(model_fingerprint(model), (3,), [problem_certificate(problem, tree)])
    return check_certificate(model, certificate, [problem])


def inherit_proof():
    """(model, problem, nodes) of an inherit-mode beta-CROWN search (optimised α, root
    bounds tightened) whose proof needs its tightened bounds, its α and some β."""
    import copy

    for seed in range(40):
        model = tiny_network(seed, (3, 10, 10, 10, 2))
        centre = np.random.default_rng(seed).uniform(-1, 1, 3)
        problem, _ = near_boundary_problem(model, centre, 0.5, np.array([1.0, -1.0]), 0.002)
        config = BabConfig(method="beta-crown", batch_size=4, max_nodes=2000)
        result = branch_and_bound(problem, dense_network(model, (3,)), config)
        assert result.status == "certified"
        nodes = result.nodes
        if not any(n.proof is not None and n.proof.betas for n in nodes):
            continue
        untightened = copy.deepcopy(nodes)
        untightened[0].tightened = []
        default_alpha = copy.deepcopy(nodes)
        for node in default_alpha:
            if node.proof is not None:
                node.proof.alphas = []
        if not _check(model, problem, untightened).valid and \
                not _check(model, problem, default_alpha).valid:
            return model, problem, nodes
    raise RuntimeError("no instance needing tightened bounds, α and β")


def test_checker_accepts_inherited_tightened_alpha_beta_proofs() -> None:
    """The checker re-derives tightened bounds and leaves with the recorded multipliers
    (the proof fails without them, so they are used) and rejects out-of-range ones."""
    import copy

    model, problem, nodes = inherit_proof()
    assert all(n.inherit for n in nodes[1:]) and not nodes[0].inherit
    report = _check(model, problem, nodes)
    assert report.valid, report.errors[:3]
    leaf = next(i for i, n in enumerate(nodes) if n.proof is not None and n.proof.alphas)
    bad_alpha = copy.deepcopy(nodes)
    bad_alpha[leaf].proof.alphas[0][0] = 1.5
    assert not _check(model, problem, bad_alpha).valid
    bad_tightened = copy.deepcopy(nodes)
    bad_tightened[0].tightened[0].alphas[0][0] = -0.5
    assert not _check(model, problem, bad_tightened).valid


def test_certificates_with_multipliers_survive_a_file_round_trip(tmp_path) -> None:
    from nobound.certify.certificate import load_certificate, save_certificate

    model, problem, nodes = inherit_proof()
    certificate = Certificate(model_fingerprint(model), (3,),
                              [problem_certificate(problem, nodes)])
    loaded = load_certificate(save_certificate(certificate, tmp_path / "c.json.gz"))
    assert loaded.problems[0].nodes == nodes
    assert check_certificate(model, loaded, [problem]).valid


def test_optimise_and_tighten_run_on_every_backend(xp) -> None:
    from nobound.backend import to_numpy
    from nobound.certify.beta_crown_intermediate import tighten_intermediate
    from nobound.certify.input_split import bound_boxes

    _, dense, box, signs, bounds, _ = split_instance(2, 2)
    rows = np.array([[[1.0, -1.0]]])
    expected, _ = optimise(dense, domains_of(box, signs, bounds), rows, np.zeros((1, 1)),
                           steps=5)
    value, _ = optimise(dense, domains_of(box, signs, bounds, xp), xp.asarray(rows),
                        xp.asarray(np.zeros((1, 1))), steps=5)
    np.testing.assert_allclose(to_numpy(value), expected, rtol=1e-10)
    tight = tighten_intermediate(dense, domains_of(box, signs, bounds), steps=3)
    moved = tighten_intermediate(dense, domains_of(box, signs, bounds, xp), steps=3)
    for k in range(len(signs)):
        np.testing.assert_allclose(to_numpy(moved.lower[k]), tight.lower[k], rtol=1e-10)
    lower, upper = box[0][None], box[1][None]
    spec = np.array([[1.0, -1.0]])
    expected, _, _ = bound_boxes(dense, lower, upper, spec, np.zeros(1), 3)
    value, _, _ = bound_boxes(dense, xp.asarray(lower), xp.asarray(upper), xp.asarray(spec),
                              xp.asarray(np.zeros(1)), 3)
    np.testing.assert_allclose(to_numpy(value), expected, rtol=1e-10)


def test_certifier_with_beta_crown_gives_checkable_certificates() -> None:
    from nobound.certify.pipeline import Certifier, CertifierConfig

    model, problem, _ = inherit_proof()
    config = CertifierConfig(timeout=60.0, batch_size=4, certificate=True,
                             bab_method="beta-crown", attack_steps=5)
    verdict = Certifier(model, (3,), config).verify([problem])
    assert verdict.status == "certified" and verdict.method == "bab"
    assert any(n.tightened for n in verdict.certificate.problems[0].nodes)
    assert check_certificate(model, verdict.certificate, [problem]).valid


def test_optimise_takes_no_step_after_its_deadline(virtual_clock) -> None:
    """A clock that ticks once per bound evaluated: with the deadline at 2.5 ticks the
    optimiser evaluates iterates 0, 1, 2 and stops — the same result as 2 steps."""
    from nobound.certify import beta_crown

    _, dense, box, signs, bounds, _ = split_instance(3, 2)
    domains = domains_of(box, signs, bounds)
    rows, offset = np.array([[[1.0, -1.0]]]), np.zeros((1, 1))
    two_steps, chosen = optimise(dense, domains, rows, offset, steps=2)
    virtual_clock.charge(beta_crown, "_back_substitute", 1.0)
    stopped, kept = optimise(dense, domains, rows, offset, steps=50, deadline=2.5)
    assert virtual_clock.now == 3
    np.testing.assert_array_equal(stopped, two_steps)
    for a, b in zip(kept.alpha + kept.beta, chosen.alpha + chosen.beta, strict=True):
        np.testing.assert_array_equal(a, b)


def test_tightening_past_its_deadline_keeps_the_starting_bounds() -> None:
    """Out of time, every layer still gets its starting point's (DeepPoly's α) bound —
    the same bounds as no optimisation steps — and they still hold."""
    from nobound.certify.beta_crown_intermediate import tighten_intermediate

    _, dense, box, signs, bounds, _ = split_instance(5, 1)
    domains = domains_of(box, signs, bounds)
    late = tighten_intermediate(dense, domains, steps=10, deadline=-np.inf)
    unoptimised = tighten_intermediate(dense, domains, steps=0)
    optimised = tighten_intermediate(dense, domains, steps=10)
    for k in range(len(signs)):
        np.testing.assert_allclose(late.lower[k], unoptimised.lower[k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(late.upper[k], unoptimised.upper[k], rtol=0, atol=1e-12)
        assert np.all(optimised.lower[k] >= late.lower[k] - 1e-12)
        assert np.all(optimised.upper[k] <= late.upper[k] + 1e-12)


def test_the_roots_one_time_tightening_does_not_stop_the_first_round(virtual_clock) -> None:
    """On a virtual clock where tightening the root's intermediate bounds costs 100 and a
    bound evaluation 0.01, a deadline at 130 leaves time for many children: the first round
    must be sized by what a sub-problem costs, not by the root's one-time tightening."""
    from nobound.certify import bab, beta_crown

    model = tiny_network(0, (2, 16, 16, 2))
    centre = np.random.default_rng(0).uniform(-1, 1, 2)
    problem, _ = near_boundary_problem(model, centre, 0.3, np.array([1.0, -1.0]), 1e-4)
    virtual_clock.charge(bab, "tighten_intermediate", 100.0)
    virtual_clock.charge(beta_crown, "_back_substitute", 0.01)
    result = branch_and_bound(problem, dense_network(model, problem.input_shape),
                              BabConfig(method="beta-crown", root_share=1.0), deadline=130.0)
    assert virtual_clock.now > 100 and result.bounded > 1, result


def test_tightened_bounds_of_a_layer_rederived_together_equal_one_by_one() -> None:
    """The checker re-derives a layer's recorded tightened bounds in one stacked
    back-substitution; entry by entry (each a batch of one) gives the same bounds up to
    the summation order of the stacked products, and both contain the true
    pre-activations."""
    from nobound.certify.checker import apply_tightened, node_bounds
    from nobound.certify.stored_network import stored_network

    model = tiny_network(2, (3, 10, 10, 10, 2))
    centre = np.random.default_rng(2).uniform(-1, 1, 3)
    problem, _ = near_boundary_problem(model, centre, 0.5, np.array([1.0, -1.0]), 1e-3)
    dense, stored = dense_network(model, (3,)), stored_network(model, (3,))
    result = branch_and_bound(problem, dense, BabConfig(method="beta-crown", max_nodes=50))
    tightened = result.nodes[0].tightened
    assert len({e.layer for e in tightened}) > 1 and len(tightened) > 10
    box = (problem.lower.reshape(-1), problem.upper.reshape(-1))
    signs = [np.zeros(n, np.int8) for n in stored.hidden_sizes]
    start = node_bounds(stored, box, signs, None)
    together = apply_tightened(stored, box, start, signs, tightened)
    one_by_one = start
    for entry in sorted(tightened, key=lambda e: e.layer):
        one_by_one = apply_tightened(stored, box, one_by_one, signs, [entry])
    points = np.concatenate([np.random.default_rng(0).uniform(*box, (3000, 3)),
                             np.array(np.meshgrid(*np.stack(box).T)).reshape(3, -1).T])
    hidden = dense.pre_activations(points)
    for k, ((lo, hi), (lo1, hi1)) in enumerate(zip(together, one_by_one, strict=True)):
        np.testing.assert_allclose(lo, lo1, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(hi, hi1, rtol=1e-9, atol=1e-12)
        assert np.all(hidden[k] >= lo) and np.all(hidden[k] <= hi)
    assert any(np.any(t[0] > s[0]) or np.any(t[1] < s[1])
               for t, s in zip(together, start, strict=True))  # the entries tighten


def sparse_instance(seed: int):
    """A network whose hidden weight matrices are ~90 % zeros (the conv-unrolled case,
    multiplied in CSR form), its box, splits on the box centre's side, and IBP bounds."""
    from nobound.certify.beta_crown import sparse_copies
    from nobound.exact.dense import DenseNetwork

    rng = np.random.default_rng(seed)
    sizes = (12, 40, 30, 3)
    weights = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.normal(0, 1, (n_out, n_in)) * (rng.uniform(size=(n_out, n_in)) < 0.1)
        weights.append(w)
    weights[-1] = rng.normal(0, 1, (sizes[-1], sizes[-2]))  # the last layer dense
    dense = DenseNetwork(weights, [rng.normal(0, 0.3, n) for n in sizes[1:]], (sizes[0],),
                         [1, 3], [(n,) for n in sizes[1:-1]])
    assert sparse_copies(weights[0]) is not None and sparse_copies(weights[-1]) is None
    centre = rng.uniform(-1, 1, sizes[0])
    box = (centre - 0.5, centre + 0.5)
    free = interval_bounds(dense, *box)
    at_centre = dense.pre_activations(centre[None])
    signs = [np.zeros(n, np.int8) for n in sizes[1:-1]]
    for k, (lo, hi) in enumerate(free[:-1]):  # two splits a layer, the centre's sides
        unstable = np.flatnonzero((lo < 0) & (hi > 0))[:2]
        signs[k][unstable] = np.where(at_centre[k][0, unstable] >= 0, 1, -1)
    splits = {layer: s for layer, s in zip(dense.relu_layers, signs, strict=True)}
    return dense, box, signs, interval_bounds(dense, *box, splits)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_weight_products_equal_the_dense_ones_and_stay_sound(seed, monkeypatch) -> None:
    """Conv layers unrolled into mostly-zero matrices are multiplied in CSR form: the
    bound and its gradient equal the dense products' (up to summation order), and the
    bound holds at sampled points that satisfy the splits."""
    from nobound.certify import beta_crown
    from nobound.exact.dense import DenseNetwork

    dense, box, signs, bounds = sparse_instance(seed)
    domains = domains_of(box, signs, bounds)
    rows = np.array([[[1.0, -1.0, 0.0], [0.0, 0.5, -2.0]]])
    multipliers = random_multipliers(np.random.default_rng(seed), signs, 2, 1.0)
    sparse_value, sparse_grads = bound_and_gradient(dense, domains, rows, np.zeros((1, 2)),
                                                    multipliers)
    monkeypatch.setattr(beta_crown, "SPARSE_DENSITY", -1.0)
    copied = DenseNetwork([w.copy() for w in dense.weights], dense.biases, dense.input_shape,
                          dense.relu_layers, dense.relu_shapes)  # new arrays: not cached
    assert beta_crown.sparse_copies(copied.weights[0]) is None
    dense_value, dense_grads = bound_and_gradient(copied, domains, rows, np.zeros((1, 2)),
                                                  multipliers)
    np.testing.assert_allclose(sparse_value, dense_value, rtol=1e-12, atol=1e-12)
    for a, b in zip(sparse_grads.alpha + sparse_grads.beta,
                    dense_grads.alpha + dense_grads.beta, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    points = np.random.default_rng(seed).uniform(*box, (20_000, box[0].size))
    hidden = dense.pre_activations(points)
    inside = np.all([np.all(s * hidden[k] >= 0, axis=1) for k, s in enumerate(signs)], axis=0)
    assert inside.any()
    outputs = hidden[-1][inside] @ rows[0].T
    assert np.all(sparse_value[0] <= outputs.min(axis=0) + 1e-9)


def test_settled_sub_domains_leave_the_optimisation_and_the_rest_is_unchanged() -> None:
    """With ``settled_above`` a sub-domain whose bound passes it stops being optimised:
    the others get exactly the steps they get without it, the settled ones keep a bound
    above the threshold that is still one of their (sound) iterates."""
    _, dense, box, signs, bounds, _ = split_instance(3, 2)
    one = domains_of(box, signs, bounds)
    count = 6
    domains = SplitDomains([np.repeat(lo, count, axis=0) for lo in one.lower],
                           [np.repeat(hi, count, axis=0) for hi in one.upper],
                           [np.repeat(s, count, axis=0) for s in one.signs],
                           one.box_lower, one.box_upper)
    rows = np.broadcast_to(np.array([[1.0, -1.0]]), (count, 1, 2))
    start, _ = optimise(dense, domains, rows, np.zeros((count, 1)), steps=0)
    # offsets put the starting bound at -0.2 … +0.3: some settled at once, some later,
    # some never
    offset = -start + np.linspace(-0.2, 0.3, count)[:, None]
    full, full_best = optimise(dense, domains, rows, offset, steps=15)
    settled, settled_best = optimise(dense, domains, rows, offset, steps=15,
                                     settled_above=0.0)
    at_start = (start + offset)[:, 0] > 0
    never = full[:, 0] <= 0
    assert at_start.any() and never.any() and not (at_start | never).all()
    np.testing.assert_allclose(settled[never], full[never], rtol=1e-12, atol=1e-12)
    assert np.all(settled[~never] > 0) and np.all(settled <= full + 1e-12)
    np.testing.assert_allclose(settled[at_start], (start + offset)[at_start], atol=1e-12)
    # each settled bound is the bound of the multipliers returned with it
    again, _ = bound_and_gradient(dense, domains, rows, offset, settled_best, gradient=False)
    np.testing.assert_allclose(again, settled, rtol=1e-12, atol=1e-12)


def _batched_instances(count: int, seed: int):
    """(dense, domains of ``count`` sub-domains: boxes inside one box, some neurons split,
    IBP bounds of each) — the batch shape input splitting and branch and bound use."""
    rng = np.random.default_rng(seed)
    model = tiny_network(seed, (3, 9, 8, 7, 2))
    dense = dense_network(model, (3,))
    lows, highs, signs = [], [], []
    for _ in range(count):
        centre = rng.uniform(-1, 1, 3)
        radius = rng.uniform(0.05, 0.8, 3)
        free = interval_bounds(dense, centre - radius, centre + radius)
        sign = [np.where(rng.random(lo.size) < 0.15, rng.choice([-1, 1], lo.size), 0)
                .astype(np.int8) for lo, _ in free[:-1]]
        sign = [np.where((lo < 0) & (hi > 0), s, 0).astype(np.int8)
                for (lo, hi), s in zip(free[:-1], sign, strict=True)]
        splits = {layer: s for layer, s in zip(dense.relu_layers, sign, strict=True)}
        bounds = interval_bounds(dense, centre - radius, centre + radius, splits)
        lows.append((centre - radius, [lo for lo, _ in bounds[:-1]]))
        highs.append((centre + radius, [hi for _, hi in bounds[:-1]]))
        signs.append(sign)
    hidden = len(signs[0])
    domains = SplitDomains([np.stack([low[1][k] for low in lows]) for k in range(hidden)],
                           [np.stack([high[1][k] for high in highs]) for k in range(hidden)],
                           [np.stack([s[k] for s in signs]) for k in range(hidden)],
                           np.stack([low[0] for low in lows]),
                           np.stack([high[0] for high in highs]))
    return dense, domains


@pytest.mark.parametrize("compiled", [True, False])
def test_per_row_deeppoly_intermediate_bounds_equal_the_batched_ones(compiled,
                                                                     monkeypatch) -> None:
    """The per-(sub-domain, neuron) rows of :func:`deeppoly_intermediate` give each neuron
    unstable in its own sub-domain the bound the batched reference (``tighten_intermediate``
    with ``steps=0`` through the optimiser's rectangular batch) gives it, hence the same
    relaxations everywhere, and the same output bounds; compiled or gathered step alike."""
    import nobound.certify.beta_crown as beta_crown
    import nobound.certify.beta_crown_intermediate as intermediate
    from nobound.certify.beta_crown import relaxation
    from nobound.certify.beta_crown_intermediate import deeppoly_intermediate, tighten_intermediate

    if not compiled:
        for module in (beta_crown, intermediate):  # the optimiser's passes and the row step
            monkeypatch.setattr(module, "numba_kernels", lambda module: None)
    for seed in range(4):
        dense, domains = _batched_instances(40, seed)
        fast = deeppoly_intermediate(dense, domains)
        reference = tighten_intermediate(dense, domains, steps=0, records=[])
        # the reference also bounds neurons stable in their own sub-domain, which only
        # matters where that shows the sub-domain empty (its splits contradict): skip those
        feasible = np.all([np.all(lo <= hi, axis=1) for lo, hi in
                           zip(reference.lower, reference.upper, strict=True)], axis=0)
        assert 10 <= feasible.sum() < 40
        for k in range(len(domains.lower)):
            own = relaxation(fast.lower[k], fast.upper[k])[0] & feasible[:, None]
            assert own.any()
            assert np.allclose(fast.lower[k][own], reference.lower[k][own], atol=1e-12)
            assert np.allclose(fast.upper[k][own], reference.upper[k][own], atol=1e-12)
            for mine, theirs in zip(relaxation(fast.lower[k], fast.upper[k]),
                                    relaxation(reference.lower[k], reference.upper[k]),
                                    strict=True):
                assert np.allclose(mine[feasible], theirs[feasible], atol=1e-12)
        objective = np.broadcast_to(np.eye(2)[None], (40, 2, 2))
        offset = np.zeros((40, 2))
        assert np.allclose(optimise(dense, fast, objective, offset, steps=0)[0][feasible],
                           optimise(dense, reference, objective, offset, steps=0)[0][feasible],
                           atol=1e-12)


def test_per_row_deeppoly_intermediate_bounds_hold_on_sampled_points() -> None:
    """Every bound :func:`deeppoly_intermediate` returns holds at the vertices and sampled
    points of its sub-domain's box that satisfy its splits, and none is looser than the
    bounds it started from."""
    from nobound.certify.beta_crown_intermediate import deeppoly_intermediate

    rng = np.random.default_rng(7)
    dense, domains = _batched_instances(30, 7)
    tight = deeppoly_intermediate(dense, domains)
    tighter = 0
    for n in range(30):
        low, high = domains.box_lower[n], domains.box_upper[n]
        corners = np.array(np.meshgrid(*np.stack([low, high]).T)).reshape(3, -1).T
        points = np.concatenate([corners, rng.uniform(low, high, (3000, 3))])
        hidden = dense.pre_activations(points)
        inside = np.ones(len(points), bool)
        for k, s in enumerate(domains.signs):
            inside &= np.all(s[n] * hidden[k] >= 0, axis=1)
        for k in range(len(domains.lower)):
            assert np.all(tight.lower[k][n] >= domains.lower[k][n])
            assert np.all(tight.upper[k][n] <= domains.upper[k][n])
            tighter += int(np.sum(tight.lower[k][n] > domains.lower[k][n] + 1e-9))
            values = hidden[k][inside]
            assert np.all(values >= tight.lower[k][n] - 1e-9)
            assert np.all(values <= tight.upper[k][n] + 1e-9)
    assert tighter > 0  # the back-substitution did tighten something


def _batched_split_domains(dense, box, signs, bounds, count: int, seed: int,
                           per_box: bool) -> SplitDomains:
    """``count`` sub-domains around one split region: bounds shrunk at random (still with
    unstable, active and inactive neurons), some extra splits, the box shared or per row."""
    rng = np.random.default_rng(seed)
    lower, upper, split = [], [], []
    for (lo, hi), s in zip(bounds[:-1], signs, strict=True):
        low = lo[None] + rng.uniform(0, 0.2, (count, lo.size)) * (hi - lo)[None]
        high = hi[None] - rng.uniform(0, 0.2, (count, hi.size)) * (hi - lo)[None]
        extra = np.where(rng.random((count, s.size)) < 0.1,
                         rng.choice([-1, 1], (count, s.size)), 0)
        sign = np.where(s[None] != 0, s[None], extra).astype(np.int8)
        lower.append(np.where(sign > 0, np.maximum(low, 0.0), low))
        upper.append(np.where(sign < 0, np.minimum(high, 0.0), high))
        split.append(sign)
    box_lower, box_upper = box
    if per_box:
        shrink = rng.uniform(0, 0.1, (count, box_lower.size)) * (box_upper - box_lower)
        box_lower, box_upper = box_lower[None] + shrink, box_upper[None] - shrink
    return SplitDomains(lower, upper, split, box_lower, box_upper)


@pytest.mark.parametrize("kind", ["sparse", "dense"])
@pytest.mark.parametrize("seed", [0, 1])
def test_compiled_back_substitution_equals_the_numpy_reference(kind, seed,
                                                               monkeypatch) -> None:
    """The compiled passes (:mod:`nobound.certify._beta_numba`: CSR product, ReLU step,
    input layer, reverse step, Adam step) give the NumPy path's bounds, gradients, input
    coefficients and optimised multipliers to 1e-9 relative, on CSR and dense weights,
    shared and per-sub-domain boxes, with settled sub-domains leaving the batch."""
    pytest.importorskip("numba")
    from nobound.certify import beta_crown
    from nobound.certify.beta_crown import input_coefficients

    if kind == "sparse":
        dense, box, signs, bounds = sparse_instance(seed)
    else:
        _, dense, box, signs, bounds, _ = split_instance(seed, 3)
    assert beta_crown._compiled(np.zeros(3)) is not None  # the compiled path is taken
    rng = np.random.default_rng(seed)
    count, rows = 7, 3
    outputs = dense.weights[-1].shape[0]
    objective = rng.normal(0, 1, (count, rows, outputs))
    offset = rng.normal(0, 0.1, (count, rows))

    def run():
        results = []
        for per_box in (False, True):
            domains = _batched_split_domains(dense, box, signs, bounds, count, seed, per_box)
            multipliers = Multipliers(
                [rng.uniform(0, 1, (count, rows, s.shape[1])) for s in domains.signs],
                [rng.exponential(1.0, (count, rows, s.shape[1])) * (s[:, None] != 0)
                 for s in domains.signs])
            value, grads = bound_and_gradient(dense, domains, objective, offset, multipliers)
            results += [value, *grads.alpha, *grads.beta,
                        input_coefficients(dense, domains, objective, offset, multipliers)]
            start, _ = optimise(dense, domains, objective, offset, steps=0)
            best, chosen = optimise(dense, domains, objective, offset - start.mean(), steps=8,
                                    settled_above=0.0)
            results += [best, *chosen.alpha, *chosen.beta]
        return results

    state = rng.bit_generator.state
    fast = run()
    rng.bit_generator.state = state
    monkeypatch.setattr(beta_crown, "numba_kernels", lambda module: None)
    reference = run()
    assert len(fast) == len(reference)
    for mine, theirs in zip(fast, reference, strict=True):
        scale = max(float(np.abs(theirs).max()), 1.0)
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-9 * scale)


def test_compiled_csr_product_equals_scipys_for_every_column_block() -> None:
    """The compiled CSR product takes columns 8, 4, 2, 1 at a time below 16, and as one
    vector from 16: every width from 1 to 20 equals SciPy's product."""
    pytest.importorskip("numba")
    from scipy.sparse import csr_array

    from nobound.certify._beta_numba import csr_times_into

    rng = np.random.default_rng(0)
    matrix = csr_array(rng.normal(size=(37, 53)) * (rng.random((37, 53)) < 0.15))
    for width in range(1, 21):
        columns = rng.normal(size=(53, width))
        out = np.full((37, width), np.nan)
        csr_times_into(matrix.indptr, matrix.indices, matrix.data, columns, out)
        np.testing.assert_allclose(out, matrix @ columns, rtol=1e-12, atol=1e-12)


def test_children_bounded_from_their_parents_multipliers_equal_the_gathered_ones() -> None:
    """:func:`bound_children` (the parents' multipliers gathered neuron-major) gives the
    bounds of :func:`bound_and_gradient` on the children's own copies of them."""
    from nobound.certify.beta_crown import bound_children

    dense, box, signs, bounds = sparse_instance(0)
    domains = _batched_split_domains(dense, box, signs, bounds, 5, 0, per_box=False)
    rng = np.random.default_rng(0)
    parents = Multipliers([rng.uniform(0, 1, (3, 2, s.shape[1])) for s in domains.signs],
                          [rng.exponential(1.0, (3, 2, s.shape[1])) for s in domains.signs])
    owners = np.array([2, 0, 0, 1, 2])
    objective = rng.normal(0, 1, (5, 2, dense.weights[-1].shape[0]))
    offset = np.zeros((5, 2))
    expected, _ = bound_and_gradient(dense, domains, objective, offset, parents.take(owners),
                                     gradient=False)
    np.testing.assert_allclose(bound_children(dense, domains, objective, offset, parents,
                                              owners), expected, rtol=1e-12, atol=1e-12)
