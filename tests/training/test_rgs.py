"""RGS (eq. 6): the averaged gradient of perturbed members, from one batched pass."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.training.rgs import rgs_gradient


def standard_normal(rows: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, d))


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_batched_backward_gives_the_average_of_the_members_own_gradients(quadratic, workers):
    sigma, count = 0.3, 5
    z = standard_normal(count, quadratic.center.size, seed=1)
    estimate, losses = rgs_gradient(quadratic.loss_of, quadratic.layout, quadratic.center,
                                    sigma, z, workers)
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


def toy_rgs(toy_bound, w: float, sigma: float, count: int, seed: int) -> float:
    z = standard_normal(count, 1, seed)
    estimate, _ = rgs_gradient(toy_bound.loss_of, toy_bound.layout, np.array([w]), sigma, z)
    return float(estimate[0])


def test_toy_deeppoly_bound_matches_the_papers_formula(toy_bound):
    # Fig. 3a: l(w) = 1 + 1[w > 0] (w − 1), discontinuous at w = 0
    w = np.array([-1.5, -0.5, -1e-3, 1e-3, 0.3, 0.9, 1.7])
    params = toy_bound.layout.to_tensors(w.reshape(-1, 1))
    np.testing.assert_allclose(toy_bound.loss_of(params).data, 1 + (w > 0) * (w - 1),
                               rtol=1e-12, atol=1e-12)


def test_rgs_with_tiny_sigma_does_not_see_the_discontinuity(toy_bound):
    # Just left of the jump the bound is flat: every perturbed gradient is exactly 0 …
    assert toy_rgs(toy_bound, -0.1, 1e-3, 64, seed=4) == 0.0
    # … and with a larger σ, RGS averages only the slope on the right (App. B.3):
    # E[1[w + ε > 0]] = Φ(w/σ) > 0, pushing w further *away* from the minimum at 0⁺.
    from math import erf, sqrt

    count, sigma, w = 4000, 0.1, -0.1
    probability = 0.5 * (1 + erf(w / sigma / sqrt(2)))
    estimate = toy_rgs(toy_bound, w, sigma, count, seed=5)
    standard_error = sqrt(probability * (1 - probability) / count)
    assert abs(estimate - probability) < 4.5 * standard_error and estimate > 0


def test_descent_with_rgs_falls_through_the_discontinuity(toy_bound):
    # §3.1: started at w > 0, gradient steps decrease w through the jump and stay on the
    # flat part l = 1, past the minimum at 0⁺ (tiny σ: RGS behaves like plain gradients).
    w = 0.5
    for step in range(80):
        w -= 0.02 * toy_rgs(toy_bound, w, 1e-3, 2, seed=100 + step)
    final = toy_bound.loss_of(toy_bound.layout.to_tensors(np.array([[w]]))).data
    assert w < 0 and float(final[0]) == 1.0


def test_rgs_with_zero_sigma_steps_exactly_like_grad(tiny_training):
    from nobound.training.method import StepContext, create_method

    model = tiny_training.model()
    x, y = tiny_training.images[:8], tiny_training.labels[:8]
    context = StepContext(epoch=0, step=0, batch_index=0, steps_per_epoch=3, seed=0,
                          eps=0.03, lr=1e-3)
    grad = create_method("grad", relaxation="deeppoly").compute_step(model, x, y, context)
    rgs = create_method("rgs", relaxation="deeppoly", population_size=3, sigma=0.0
                        ).compute_step(model, x, y, context)
    for name, gradient in grad.gradients.items():
        np.testing.assert_allclose(rgs.gradients[name], gradient, rtol=1e-12, atol=1e-15)


def test_rgs_sigma_decays_at_its_milestones():
    from nobound.training.method import create_method

    method = create_method("rgs", sigma=1e-3, sigma_milestones=[50, 60], sigma_factor=0.4)
    assert method.sigma_schedule(49.9) == 1e-3
    assert method.sigma_schedule(50) == pytest.approx(4e-4)
    assert method.sigma_schedule(65) == pytest.approx(1.6e-4)


def test_rgs_resumes_bit_for_bit(tiny_training, tmp_path):
    from nobound.training.method import create_method

    def method():
        return create_method("rgs", relaxation="crown-ibp", population_size=2, sigma=1e-2)

    straight = tiny_training.model()
    tiny_training.trainer(straight, method(), lr=0.02).fit()
    interrupted = tiny_training.model()
    first = tiny_training.trainer(interrupted, method(), lr=0.02, run_dir=tmp_path,
                                  checkpoint_every=1)
    first.fit(max_steps=4)
    resumed_model = tiny_training.model(seed=99)  # whatever it starts from is overwritten
    resumed = tiny_training.trainer(resumed_model, method(), lr=0.02, run_dir=tmp_path)
    resumed.restore(sorted(tmp_path.glob("checkpoint-*.h5"))[-1])
    resumed.fit()
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed_model.named_parameters(),
                                 strict=True):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def step_context():
    from nobound.training.method import StepContext

    return StepContext(epoch=0, step=0, batch_index=0, steps_per_epoch=3, seed=0, eps=0.03,
                       lr=1e-3)


@pytest.mark.parametrize("relaxation", ["ibp", "deeppoly"])
def test_rgs_members_split_among_workers_give_the_one_pass_step(tiny_training, relaxation):
    # Threads change only which members share a batched pass: the same gradient and metrics.
    from nobound.training.method import create_method

    model = tiny_training.model()
    x, y = tiny_training.images[:8], tiny_training.labels[:8]
    steps = {workers: create_method("rgs", relaxation=relaxation, population_size=4,
                                    sigma=1e-2, workers=workers
                                    ).compute_step(model, x, y, step_context())
             for workers in (1, 2, 4)}
    for workers in (2, 4):
        for name, gradient in steps[1].gradients.items():
            np.testing.assert_allclose(steps[workers].gradients[name], gradient, rtol=1e-10,
                                       atol=1e-14, err_msg=name)
        assert steps[workers].metrics == pytest.approx(steps[1].metrics, rel=1e-10)


def test_rgs_with_a_train_mode_batchnorm_uses_one_worker_and_the_centres_metrics():
    from nobound.nn.init import ibp_init
    from nobound.nn.zoo import conv_net
    from nobound.training.grad import natural_metrics
    from nobound.training.method import create_method

    rng = np.random.default_rng(0)
    model = ibp_init(conv_net((1, 8, 8), 3, [(3, 3, 2, 1)], [6], batchnorm=True,
                              dtype=np.float64), 0)
    x, y = rng.uniform(size=(6, 1, 8, 8)), rng.integers(0, 3, 6)
    method = create_method("rgs", relaxation="deeppoly", population_size=2, sigma=1e-2,
                           workers=2)
    assert method.workers_for(model, np.zeros(1)) == 1
    step = method.compute_step(model, x, y, step_context())  # needed the members' pass
    assert all(np.isfinite(g).all() for g in step.gradients.values())
    centre = natural_metrics(model, x, y)
    assert step.metrics["natural_loss"] == centre["natural_loss"]
    model.eval()
    assert method.workers_for(model, np.zeros(1)) == 2
