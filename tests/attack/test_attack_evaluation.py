"""evaluate_robustness: natural and PGD accuracy against exact answers (linear classifier)."""

from __future__ import annotations

import numpy as np

from nobound.attack.evaluation import evaluate_robustness, predict
from nobound.attack.pgd import PGDConfig
from nobound.nn import Flatten, Linear, Sequential


def test_natural_and_adversarial_accuracy_match_the_exact_answer():
    rng = np.random.default_rng(7)
    model = Sequential(Flatten(), Linear(16, 2, dtype=np.float64))
    weight, bias = rng.normal(size=(2, 16)), rng.normal(size=2)
    model.load_state_dict({"1.weight": weight, "1.bias": bias})
    w, b = weight[1] - weight[0], bias[1] - bias[0]
    x = 0.35 + 0.3 * rng.random((120, 1, 4, 4))
    score = x.reshape(120, -1) @ w + b
    labels = np.where(rng.random(120) < 0.8, score > 0, score <= 0).astype(np.int64)
    distance = np.abs(score) / np.abs(w).sum()  # l∞ distance to the decision boundary
    eps = float(np.median(distance))
    far = np.abs(distance - eps) > 0.05 * eps

    report = evaluate_robustness(model, x, labels, eps, batch_size=50, seed=0,
                                 config=PGDConfig(steps=30, restarts=1))
    natural = (score > 0).astype(np.int64) == labels
    np.testing.assert_array_equal(report.natural_correct, natural)
    np.testing.assert_array_equal(predict(model, x, 32) == labels, natural)
    robust = natural & (distance > eps)
    np.testing.assert_array_equal(report.adversarial_correct[far], robust[far])
    assert report.n == 120
    assert report.natural_accuracy == natural.mean()
    assert report.adversarial_accuracy == report.adversarial_correct.mean()
    assert np.all(report.adversarial_correct <= report.natural_correct)
