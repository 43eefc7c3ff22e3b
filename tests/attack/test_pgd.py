"""PGD: box respected exactly, finds exactly the adversarial examples that exist for a
linear classifier, increases the loss, leaves the model untouched, is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.attack.objectives import margin_objective
from nobound.attack.pgd import (
    EVALUATION_ATTACK,
    TRAINING_ATTACK,
    PGDConfig,
    attack_box,
    pgd_attack,
    step_size,
)
from nobound.autodiff.tensor import Tensor
from nobound.backend import device_of, to_numpy
from nobound.nn import Flatten, Linear, ReLU, Sequential, kaiming_uniform
from nobound.training.losses import cross_entropy


def relu_net(xp, seed=0, dtype=np.float64):
    model = Sequential(Flatten(), Linear(16, 12, dtype=dtype), ReLU(),
                       Linear(12, 3, dtype=dtype))
    return kaiming_uniform(model, seed).to(device_of(xp))


def linear_classifier(xp, rng):
    """Two logits with z₁ − z₀ = w·x + b; the weights are returned on the host."""
    model = Sequential(Flatten(), Linear(16, 2, dtype=np.float64))
    weight = rng.normal(size=(2, 16))
    bias = rng.normal(size=2)
    model.load_state_dict({"1.weight": weight, "1.bias": bias})
    model.to(device_of(xp))
    return model, weight[1] - weight[0], bias[1] - bias[0]


def test_margin_objective_matches_definition_and_gradient(xp):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5))
    targets = rng.integers(0, 5, size=6)
    tensor = Tensor(xp.asarray(logits), requires_grad=True)
    value = margin_objective(tensor, xp.asarray(targets))
    value.sum().backward()
    expected = np.array([np.max(np.delete(row, t)) - row[t]
                         for row, t in zip(logits, targets, strict=True)])
    np.testing.assert_array_equal(value.numpy(), expected)
    grad = to_numpy(tensor.grad)
    for row, t, g in zip(logits, targets, grad, strict=True):
        others = np.where(np.arange(5) == t, -np.inf, row)
        want = np.zeros(5)
        want[np.argmax(others)] += 1.0
        want[t] -= 1.0
        np.testing.assert_array_equal(g, want)


def test_step_size_schedule_follows_ctbench():
    assert [step_size(k, 200, 0.2) for k in (0, 99, 100, 159, 160, 179, 180, 199)] == \
        pytest.approx([0.2, 0.2, 0.02, 0.02, 0.002, 0.002, 0.0002, 0.0002], rel=1e-12)
    assert [step_size(k, 30, 0.2) for k in (0, 20, 21, 29)] == \
        pytest.approx([0.2, 0.2, 0.02, 0.02], rel=1e-12)
    assert [step_size(k, 10, 0.2) for k in range(10)] == [0.2] * 10
    assert step_size(12, 15, 0.2) == pytest.approx(0.04, rel=1e-12)


@pytest.mark.parametrize("config", [EVALUATION_ATTACK, TRAINING_ATTACK,
                                    PGDConfig(steps=7, restarts=3, step_size=0.9)])
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3, 2.0])
def test_adversarial_points_stay_in_the_clipped_box(xp, config, eps):
    rng = np.random.default_rng(1)
    x = rng.random((20, 1, 4, 4))
    x[:, :, 0, :] = 0.0  # pixels on the boundary of the valid range
    x[:, :, 1, :] = 1.0
    x = xp.asarray(x)
    targets = xp.asarray(rng.integers(0, 3, size=20))
    result = pgd_attack(relu_net(xp), x, targets, eps, config, seed=3)
    lower, upper = xp.maximum(x - eps, 0.0), xp.minimum(x + eps, 1.0)
    assert bool(xp.all(result.adversarial >= lower)) and bool(xp.all(result.adversarial <= upper))
    assert result.adversarial.dtype == x.dtype and result.adversarial.shape == x.shape
    if eps == 0.0:
        assert bool(xp.all(result.adversarial == x))


def test_attack_box_rejects_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        attack_box(np.zeros((1, 1, 2, 2)), -0.1)
    with pytest.raises(ValueError, match="valid range"):
        attack_box(np.full((1, 1, 2, 2), 1.5), 0.1)


@pytest.mark.parametrize("keep", ["first-adversarial", "max-loss"])
def test_finds_exactly_the_adversarial_examples_of_a_linear_classifier(xp, keep):
    """For z₁ − z₀ = w·x + b the smallest l∞ change that flips the class is
    |w·x + b| / ‖w‖₁ (when the box is not clipped): PGD must succeed on every sample whose
    distance is below eps and can never succeed on one whose distance is above."""
    rng = np.random.default_rng(2)
    model, w, b = linear_classifier(xp, rng)
    x = 0.35 + 0.3 * rng.random((100, 1, 4, 4))  # in [0.35, 0.65]: no clipping at eps 0.3
    score = x.reshape(100, -1) @ w + b
    targets = (score > 0).astype(np.int64)  # every sample correctly classified
    distance = np.abs(score) / np.abs(w).sum()
    eps = float(np.median(distance))
    far = np.abs(distance - eps) > 0.05 * eps  # skip samples too close to call
    assert eps < 0.3 and far.sum() >= 60
    config = PGDConfig(steps=50, restarts=2, step_size=0.2, loss="margin", keep=keep)
    result = pgd_attack(model, xp.asarray(x), xp.asarray(targets), eps, config, seed=0)
    success = to_numpy(result.success)
    np.testing.assert_array_equal(success[far], (distance < eps)[far])


def test_pgd_increases_the_cross_entropy_of_a_relu_net():
    rng = np.random.default_rng(4)
    model = relu_net(np)
    x = rng.random((64, 1, 4, 4))
    targets = rng.integers(0, 3, size=64)
    clean = cross_entropy(model(Tensor(x)), targets, reduction="none").data
    result = pgd_attack(model, x, targets, 0.1, TRAINING_ATTACK, seed=0)
    attacked = cross_entropy(model(Tensor(result.adversarial)), targets, reduction="none").data
    np.testing.assert_allclose(attacked, result.loss, rtol=1e-12)
    assert np.all(attacked > clean)


def test_attack_leaves_the_model_untouched():
    model = relu_net(np)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    model.train()
    x = np.random.default_rng(5).random((8, 1, 4, 4))
    pgd_attack(model, x, np.zeros(8, np.int64), 0.1, TRAINING_ATTACK)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_random_starts_are_reproducible_from_seed_and_counters():
    model = relu_net(np)
    x = np.random.default_rng(6).random((8, 1, 4, 4))
    t = np.arange(8) % 3
    config = PGDConfig(steps=3, restarts=1, loss="cross-entropy", keep="max-loss")
    first = pgd_attack(model, x, t, 0.1, config, seed=1, counters=(2, 5)).adversarial
    again = pgd_attack(model, x, t, 0.1, config, seed=1, counters=(2, 5)).adversarial
    other = pgd_attack(model, x, t, 0.1, config, seed=1, counters=(2, 6)).adversarial
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
