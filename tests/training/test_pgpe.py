"""PGPE (§3.3): fitness shaping, the symmetric estimator, sigma updates, noise from seeds."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff.tensor import Tensor
from nobound.nn.layers import Linear
from nobound.nn.sequential import Sequential
from nobound.training.losses import cross_entropy
from nobound.training.perturbation import ParameterLayout
from nobound.training.pgpe import (
    PGPEConfig,
    centered_ranks,
    fitness_weights,
    pgpe_gradients,
    updated_sigma,
)
from nobound.training.population import evaluate_population


def symmetric_members(center: np.ndarray, sigma: np.ndarray, z: np.ndarray):
    """member_vectors(start, stop) for rows θ+σz_0, θ−σz_0, θ+σz_1, …"""
    rows = np.empty((2 * len(z), center.size))
    rows[0::2] = center + sigma * z
    rows[1::2] = center - sigma * z
    return lambda start, stop: rows[start:stop]


def estimate(loss_of, layout, center, sigma, z, ranking="raw", chunk=None):
    losses = evaluate_population(loss_of, layout, symmetric_members(center, sigma, z),
                                 2 * len(z))
    weights = fitness_weights(losses, ranking)
    return pgpe_gradients(weights, sigma, lambda a, b: z[a:b], chunk), losses


def test_centered_ranks_are_evenly_spaced_from_minus_to_plus_half():
    losses = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    ranks = centered_ranks(losses)
    assert ranks[np.argmin(losses)] == -0.5 and ranks[np.argmax(losses)] == 0.5
    assert ranks.sum() == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(np.diff(np.sort(ranks)), 1 / (len(losses) - 1))
    assert np.all(np.argsort(ranks) == np.argsort(losses))


def test_centered_ranking_is_invariant_to_monotone_transforms(quadratic):
    sigma = np.full(quadratic.center.size, 0.2)
    z = np.random.default_rng(4).standard_normal((16, quadratic.center.size))
    (center_a, sigma_a), _ = estimate(quadratic.loss_of, quadratic.layout, quadratic.center,
                                      sigma, z, ranking="centered")

    def shifted_exp(params):
        return (quadratic.loss_of(params) * 0.5).exp() + 3.0

    (center_b, sigma_b), _ = estimate(shifted_exp, quadratic.layout, quadratic.center, sigma, z,
                                      ranking="centered")
    np.testing.assert_array_equal(center_a, center_b)
    np.testing.assert_array_equal(sigma_a, sigma_b)


def test_raw_estimate_on_a_quadratic_is_mean_of_z_zT_times_gradient(quadratic):
    # L(θ+ε) − L(θ−ε) = 2 εᵀ∇L(θ) exactly on a quadratic, so g_θ/σ² = (1/n) Σ z zᵀ g.
    sigma = np.full(quadratic.center.size, 0.1)
    z = np.random.default_rng(5).standard_normal((50, quadratic.center.size))
    (center_gradient, _), _ = estimate(quadratic.loss_of, quadratic.layout, quadratic.center,
                                       sigma, z)
    expected = (z.T @ z / len(z)) @ quadratic.gradient
    np.testing.assert_allclose(center_gradient / sigma**2, expected, rtol=1e-10)


def test_raw_estimate_converges_to_the_true_gradient_within_its_standard_error(quadratic):
    # Per direction the estimate is z (zᵀg); for z ~ N(0, I): Var[z_j zᵀg] = ‖g‖² + g_j².
    count = 4000
    sigma = np.full(quadratic.center.size, 0.1)
    z = np.random.default_rng(6).standard_normal((count, quadratic.center.size))
    (center_gradient, _), _ = estimate(quadratic.loss_of, quadratic.layout, quadratic.center,
                                       sigma, z)
    g = quadratic.gradient
    standard_error = np.sqrt((g @ g + g**2) / count)
    errors = np.abs(center_gradient / sigma**2 - g) / standard_error
    assert np.all(errors < 4.5), errors


def test_sigma_gradient_on_a_quadratic_matches_the_smoothed_loss_derivative(quadratic):
    # L_σ = L(θ) + ½ Σ_j A_jj σ_j², so ∂L_σ/∂σ_j = A_jj σ_j, and E[g_σ] = (1 − 1/n) σ² A_jj σ
    # (see docs/gls.md). The tolerance is 4.5 empirical standard errors of the per-direction
    # terms ½ (q_i − q̄)(ε_ij² − σ²)/σ, q_i = ε_iᵀAε_i.
    count, s = 4000, 0.2
    sigma = np.full(quadratic.center.size, s)
    z = np.random.default_rng(8).standard_normal((count, quadratic.center.size))
    (_, sigma_gradient), _ = estimate(quadratic.loss_of, quadratic.layout, quadratic.center,
                                      sigma, z)
    noise = s * z
    quadratic_forms = np.einsum("ni,ij,nj->n", noise, quadratic.matrix, noise)
    terms = 0.5 * (quadratic_forms - quadratic_forms.mean())[:, None] * (noise**2 - s**2) / s
    np.testing.assert_allclose(sigma_gradient, terms.mean(axis=0), rtol=1e-9)
    expected = (1 - 1 / count) * s**3 * np.diag(quadratic.matrix)
    standard_error = terms.std(axis=0) / np.sqrt(count)
    assert np.all(np.abs(sigma_gradient - expected) < 4.5 * standard_error)
    assert np.all(sigma_gradient > 0)  # a convex loss asks for less noise


def test_chunked_gradient_equals_one_chunk(quadratic):
    sigma = np.linspace(0.05, 0.3, quadratic.center.size)
    z = np.random.default_rng(9).standard_normal((23, quadratic.center.size))
    (whole_c, whole_s), _ = estimate(quadratic.loss_of, quadratic.layout, quadratic.center,
                                     sigma, z)
    (chunk_c, chunk_s), _ = estimate(quadratic.loss_of, quadratic.layout, quadratic.center,
                                     sigma, z, chunk=7)
    np.testing.assert_allclose(chunk_c, whole_c, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(chunk_s, whole_s, rtol=1e-12, atol=1e-15)


def test_small_sigma_and_many_samples_approach_the_gradient_of_a_smooth_network_loss():
    rng = np.random.default_rng(10)
    model = Sequential(Linear(4, 5, dtype=np.float64), Linear(5, 3, dtype=np.float64))
    for p in model.parameters():
        p.data[...] = rng.normal(size=p.shape)
    x, targets = rng.normal(size=(16, 4)), rng.integers(0, 3, size=16)
    params = dict(model.named_parameters())
    loss = cross_entropy(model(Tensor(x)), targets)
    loss.backward()
    layout = ParameterLayout.of(params)
    true_gradient = layout.flatten({name: p.grad for name, p in params.items()})

    def loss_of(member_params):
        return cross_entropy(model(Tensor(x), member_params), targets)

    count = 3000
    center = layout.flatten(params)
    sigma = np.full(layout.size, 1e-4)
    z = rng.standard_normal((count, layout.size))
    (center_gradient, _), _ = estimate(loss_of, layout, center, sigma, z)
    g = true_gradient
    standard_error = np.sqrt((g @ g + g**2) / count)
    errors = np.abs(center_gradient / sigma**2 - g) / standard_error
    assert np.all(errors < 4.5), errors


def test_sigma_update_is_bounded_relative_to_the_current_sigma():
    config = PGPEConfig(stdev_learning_rate=1.0, stdev_max_change=0.2, stdev_min=1e-4)
    sigma = np.array([1e-3, 2e-3, 1e-3, 1.1e-4])
    gradient = np.array([1.0, -1.0, 1e-5, 1.0])  # huge shrink, huge growth, small, tiny σ
    new = updated_sigma(sigma, gradient, config)
    np.testing.assert_allclose(new[:3], [0.8e-3, 2.4e-3, 1e-3 - 1e-5])
    assert new[3] == pytest.approx(1e-4)  # 0.8 · 1.1e-4 < stdev_min


def test_config_rejects_odd_populations_and_unknown_rankings():
    with pytest.raises(ValueError):
        PGPEConfig(population_size=5)
    with pytest.raises(ValueError):
        PGPEConfig(ranking="nes")
    with pytest.raises(ValueError):
        PGPEConfig(chunk_size=3)


def test_clipup_takes_normalised_steps_and_caps_its_speed():
    from nobound.training.clipup import ClipUp

    theta = Tensor(np.array([1.0, -2.0, 0.5]))
    optimizer = ClipUp({"theta": theta}, lr=0.01, momentum=0.9)
    gradient = np.array([3.0, 4.0, 0.0])
    start = theta.data.copy()
    optimizer.step({"theta": gradient})
    np.testing.assert_allclose(start - theta.data, 0.01 * gradient / 5.0, rtol=1e-12)
    for _ in range(60):
        before = theta.data.copy()
        optimizer.step({"theta": 1e6 * gradient})  # the gradient's scale never matters
    # v_k = 0.01 (1 + 0.9 + … ) would exceed the default max speed 2·lr: it is capped
    np.testing.assert_allclose(np.linalg.norm(before - theta.data), 0.02, rtol=1e-12)


def test_clipup_state_round_trip_reproduces_the_next_step():
    from nobound.training.clipup import ClipUp

    def run(resume: bool):
        theta = Tensor(np.zeros(4))
        optimizer = ClipUp({"theta": theta}, lr=0.1, momentum=0.9, max_speed=0.15)
        rng = np.random.default_rng(11)
        grads = [rng.normal(size=4) for _ in range(5)]
        for g in grads[:3]:
            optimizer.step({"theta": g})
        if resume:
            state = optimizer.state_dict()
            theta_copy = Tensor(theta.data.copy())
            optimizer = ClipUp({"theta": theta_copy}, lr=0.1, momentum=0.9, max_speed=0.15)
            optimizer.load_state_dict(state)
            theta = theta_copy
        for g in grads[3:]:
            optimizer.step({"theta": g})
        return theta.data

    np.testing.assert_array_equal(run(False), run(True))


def toy_pgpe(toy_bound, w: float, sigma: float, count: int, seed: int):
    """PGPE's raw-loss estimate of dL_σ/dw, and the per-direction terms it averages."""
    z = np.random.default_rng(seed).standard_normal((count, 1))
    s = np.array([sigma])
    (center_gradient, _), losses = estimate(toy_bound.loss_of, toy_bound.layout,
                                            np.array([w]), s, z)
    terms = z[:, 0] * (losses[0::2] - losses[1::2]) / (2 * sigma)
    return float(center_gradient[0] / sigma**2), terms


def test_pgpe_sees_across_the_toy_discontinuity(toy_bound):
    # L_σ(w) = 1 + (w − 1)Φ(w/σ) + σφ(w/σ)  ⇒  L_σ'(w) = Φ(w/σ) − φ(w/σ)/σ: left of the
    # jump the smoothed slope is strongly negative — towards the minimum at w > 0 — where
    # gradients of l itself are 0 (and RGS only sees Φ(w/σ) > 0, see test_rgs).
    from math import erf, exp, pi, sqrt

    w, sigma = -0.1, 0.1
    u = w / sigma
    analytic = 0.5 * (1 + erf(u / sqrt(2))) - exp(-u * u / 2) / sqrt(2 * pi) / sigma
    gradient, terms = toy_pgpe(toy_bound, w, sigma, 2000, seed=12)
    np.testing.assert_allclose(gradient, terms.mean(), rtol=1e-12)
    assert abs(gradient - analytic) < 4.5 * terms.std() / np.sqrt(len(terms))
    assert gradient < -1.0


def test_descent_with_pgpe_settles_near_the_smoothed_minimum(toy_bound):
    # The smoothed minimum solves Φ(u) = φ(u)/σ at u = w/σ (≈ 0.17 for σ = 0.1); started
    # on the flat side, PGPE climbs back over the jump and stays there, l(w) = w ≪ 1.
    from math import erf, exp, pi, sqrt

    def smoothed_slope(w: float, sigma: float) -> float:
        u = w / sigma
        return 0.5 * (1 + erf(u / sqrt(2))) - exp(-u * u / 2) / sqrt(2 * pi) / sigma

    w, sigma = -0.3, 0.1
    low, high = 0.0, 1.0  # bisection for the root of the (increasing) smoothed slope
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if smoothed_slope(middle, sigma) < 0 else (low, middle)
    for step in range(120):
        gradient, _ = toy_pgpe(toy_bound, w, sigma, 64, seed=200 + step)
        w -= 0.02 * gradient
    assert abs(w - low) < 0.05, (w, low)


def pgpe_run(tiny_training, steps_options, run_dir=None, max_steps=None, model=None,
             restore=None, epochs=2):
    from nobound.training.method import create_method

    model = model or tiny_training.model()
    method = create_method("pgpe", relaxation="deeppoly", population_size=8,
                           stdev_init=1e-2, **steps_options)
    trainer = tiny_training.trainer(model, method, lr=0.05, grad_clip=0.0, run_dir=run_dir,
                                    checkpoint_every=1 if run_dir else 0, epochs=epochs)
    if restore is not None:
        trainer.restore(restore)
    trainer.fit(max_steps=max_steps)
    return model, method


def test_pgpe_update_does_not_depend_on_chunking_or_stored_noise(tiny_training):
    reference, ref_method = pgpe_run(tiny_training, {}, epochs=1)
    for options in ({"chunk_size": 2}, {"chunk_size": 6, "keep_noise_mb": 0.0},
                    {"memory_budget_mb": 1e-3}):
        model, method = pgpe_run(tiny_training, options, epochs=1)
        for (name, a), (_, b) in zip(reference.named_parameters(), model.named_parameters(),
                                     strict=True):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(method.sigma, ref_method.sigma, rtol=1e-12)
    assert not np.all(ref_method.sigma == 1e-2)  # sigma was learned


def test_pgpe_resumes_bit_for_bit_with_its_sigma_and_clipup_state(tiny_training, tmp_path):
    straight, straight_method = pgpe_run(tiny_training, {})
    pgpe_run(tiny_training, {}, run_dir=tmp_path, max_steps=3)
    checkpoint = sorted(tmp_path.glob("checkpoint-*.h5"))[-1]
    resumed, resumed_method = pgpe_run(tiny_training, {}, run_dir=tmp_path,
                                       model=tiny_training.model(seed=5), restore=checkpoint)
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters(),
                                 strict=True):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    np.testing.assert_array_equal(straight_method.sigma, resumed_method.sigma)
