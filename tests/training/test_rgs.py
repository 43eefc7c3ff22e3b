"""RGS (eq. 6): the averaged gradient of perturbed members, from one batched pass."""

from __future__ import annotations

import numpy as np

from nobound.training.rgs import rgs_gradient


def standard_normal(rows: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, d))


def test_batched_backward_gives_the_average_of_the_members_own_gradients(quadratic):
    sigma, count = 0.3, 5
    z = standard_normal(count, quadratic.center.size, seed=1)
    estimate, losses = rgs_gradient(quadratic.loss_of, quadratic.layout, quadratic.center,
                                    sigma, z)
    members = quadratic.center + sigma * z
    own_gradients = members @ quadratic.matrix + quadratic.offset  # ∇L(θ_i), row by row
    np.testing.assert_allclose(estimate, own_gradients.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(losses, [quadratic.value(m) for m in members], rtol=1e-12)


def test_estimate_converges_to_the_true_gradient_within_its_standard_error(quadratic):
    # On a quadratic ∇L(θ + σz) = g + σAz, so ĝ − g = σ A z̄ with z̄ ~ N(0, I/n):
    # Var(ĝ_j) = σ² (A²)_jj / n exactly.
    sigma, count = 0.05, 4000
    z = standard_normal(count, quadratic.center.size, seed=2)
    estimate, _ = rgs_gradient(quadratic.loss_of, quadratic.layout, quadratic.center, sigma, z)
    standard_error = sigma * np.sqrt(np.diag(quadratic.matrix @ quadratic.matrix) / count)
    errors = np.abs(estimate - quadratic.gradient) / standard_error
    assert np.all(errors < 4.5), errors
    assert np.any(errors > 0.05)  # the noise really was applied


def test_with_zero_sigma_rgs_is_the_plain_gradient(quadratic):
    z = standard_normal(2, quadratic.center.size, seed=3)
    estimate, _ = rgs_gradient(quadratic.loss_of, quadratic.layout, quadratic.center, 0.0, z)
    np.testing.assert_allclose(estimate, quadratic.gradient, rtol=1e-12)
