"""Optimisers against hand-computed updates; clipping; MultiStepLR; exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nobound.autodiff import Tensor
from nobound.training.optim import SGD, Adam, MultiStepLR, clip_by_global_norm, global_norm

GRADIENTS = [np.array([0.5, -2.0, 0.0]), np.array([1.0, 1.0, -3.0]), np.array([-0.25, 4.0, 2.0])]


def parameter(xp, values=(1.0, -1.0, 0.5)) -> Tensor:
    return Tensor(xp.asarray(values, dtype=xp.float64), requires_grad=True)


def host(array) -> np.ndarray:
    return np.asarray(array.tolist())


def test_sgd_with_momentum_matches_hand_computation(xp):
    """v₁ = g₁, v_t = μ v_{t−1} + g_t + λθ, θ_t = θ_{t−1} − η v_t (PyTorch, no dampening)."""
    p = parameter(xp)
    optimizer = SGD({"p": p}, lr=0.1, momentum=0.9, weight_decay=0.01)
    theta, velocity = np.array([1.0, -1.0, 0.5]), None
    for g in GRADIENTS:
        p.grad = xp.asarray(g)
        optimizer.step()
        d = g + 0.01 * theta
        velocity = d if velocity is None else 0.9 * velocity + d
        theta = theta - 0.1 * velocity
        assert np.allclose(host(p.data), theta, rtol=1e-15, atol=1e-15)


def test_plain_sgd_is_gradient_descent(xp):
    p = parameter(xp)
    SGD({"p": p}, lr=0.5, momentum=0.0).step({"p": xp.asarray(GRADIENTS[0])})
    assert np.array_equal(host(p.data), np.array([1.0, -1.0, 0.5]) - 0.5 * GRADIENTS[0])


def test_adam_matches_hand_computation(xp):
    p = parameter(xp)
    lr, beta1, beta2, eps = 0.01, 0.9, 0.999, 1e-8
    optimizer = Adam({"p": p}, lr=lr, betas=(beta1, beta2), eps=eps)
    theta, m, v = np.array([1.0, -1.0, 0.5]), np.zeros(3), np.zeros(3)
    for t, g in enumerate(GRADIENTS, start=1):
        optimizer.step({"p": xp.asarray(g)})
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        theta = theta - lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
        assert np.allclose(host(p.data), theta, rtol=1e-14, atol=1e-15)


def test_first_adam_step_has_length_lr_per_coordinate(xp):
    """At t = 1, m̂ = g and v̂ = g², so each coordinate moves by η g / (|g| + ε)."""
    p = parameter(xp)
    g = np.array([3.0, -1e-3, 0.0])
    Adam({"p": p}, lr=0.01).step({"p": xp.asarray(g)})
    moved = host(p.data) - np.array([1.0, -1.0, 0.5])
    assert np.allclose(moved, -0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12, atol=0)


def test_step_reads_dot_grad_and_treats_missing_gradients_as_zero(xp):
    p, q = parameter(xp), parameter(xp)
    (p * 2.0).sum().backward()
    optimizer = SGD({"p": p, "q": q}, lr=0.1, momentum=0.0)
    optimizer.step()
    assert np.allclose(host(p.data), [0.8, -1.2, 0.3]) and host(q.data).tolist() == [1, -1, 0.5]
    optimizer.zero_grad()
    assert p.grad is None


def test_updates_keep_the_parameter_dtype(xp):
    for optimizer_type in (SGD, Adam):
        p = Tensor(xp.ones(3, dtype=xp.float32), requires_grad=True)
        optimizer_type({"p": p}, lr=0.1).step({"p": xp.asarray([1.0, 2.0, 3.0])})
        assert p.dtype == xp.float32


def test_learning_rate_must_be_positive():
    with pytest.raises(ValueError, match="learning rate"):
        Adam({"p": Tensor(np.ones(2), requires_grad=True)}, lr=0.0)


def test_clip_by_global_norm_scales_all_gradients_together(xp):
    grads = {"a": xp.asarray([3.0, 0.0]), "b": xp.asarray([[0.0], [4.0]])}
    assert global_norm(grads) == 5.0
    norm = clip_by_global_norm(grads, 1.0)
    assert norm == 5.0
    assert math.isclose(global_norm(grads), 1.0, rel_tol=1e-9)
    assert np.allclose(host(grads["a"]), [0.6, 0.0]) and np.allclose(host(grads["b"]),
                                                                      [[0.0], [0.8]])


def test_clip_by_global_norm_leaves_small_gradients_and_disabled_clipping_alone(xp):
    grads = {"a": xp.asarray([0.3, 0.4])}
    assert clip_by_global_norm(grads, 1.0) == pytest.approx(0.5)
    assert host(grads["a"]).tolist() == [0.3, 0.4]
    big = {"a": xp.asarray([30.0, 40.0])}
    clip_by_global_norm(big, 0.0)
    assert host(big["a"]).tolist() == [30.0, 40.0]


def test_multistep_lr_decays_at_each_milestone():
    schedule = MultiStepLR(5e-5, [60, 50], 0.2)
    assert schedule(0) == 5e-5 and schedule(49.99) == 5e-5
    assert math.isclose(schedule(50), 1e-5) and math.isclose(schedule(59), 1e-5)
    assert math.isclose(schedule(60), 2e-6) and math.isclose(schedule(1000), 2e-6)


@pytest.mark.parametrize("optimizer_type", [SGD, Adam])
def test_state_dict_round_trip_continues_identically(xp, optimizer_type):
    def run(optimizer, p, gradients):
        for g in gradients:
            optimizer.step({"p": xp.asarray(g)})
        return host(p.data)

    p = parameter(xp)
    optimizer = optimizer_type({"p": p}, lr=0.05)
    run(optimizer, p, GRADIENTS[:2])
    saved_state, saved_values = optimizer.state_dict(), xp.array(p.data, copy=True)
    uninterrupted = run(optimizer, p, GRADIENTS[2:] + GRADIENTS)

    resumed_p = Tensor(saved_values, requires_grad=True)
    resumed = optimizer_type({"p": resumed_p}, lr=1.0)
    resumed.load_state_dict(saved_state)
    assert resumed.step_count == 2 and resumed.lr == 0.05
    assert np.array_equal(run(resumed, resumed_p, GRADIENTS[2:] + GRADIENTS), uninterrupted)
