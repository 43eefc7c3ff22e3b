"""Batched certification of a test set decides every sample as the per-sample path does."""

from __future__ import annotations

import numpy as np
from certify_instances import tiny_network

from nobound.certify.batched import certify_batch
from nobound.certify.pipeline import Certifier, CertifierConfig

# no branch and bound: the bound stages are deterministic, so the certified sets must match
CONFIG = CertifierConfig(timeout=5.0, bab=False, robustness_attack_steps=20,
                         robustness_attack_restarts=2)


def test_batch_verdicts_match_the_per_sample_certifier() -> None:
    model = tiny_network(7, (4, 12, 12, 3))
    certifier = Certifier(model, (4,), CONFIG)
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.8, (40, 4))
    scores = certifier.model(images).data
    labels = np.argmax(scores, axis=1)
    labels[:5] = (labels[:5] + 1) % 3  # five natural errors
    eps = 0.05
    batched = certify_batch(certifier, images, labels, eps)
    single = [certifier.certify_sample(x, int(t), eps) for x, t in zip(images, labels,
                                                                       strict=True)]
    statuses = [v.status for v in batched]
    assert len(batched) == len(labels)
    assert [v.status == "certified" for v in batched] == \
        [v.status == "certified" for v in single]
    assert [v.method for v in batched[:5]] == ["natural"] * 5
    assert {"certified", "falsified"} <= set(statuses)
    for verdict, x, label in zip(batched, images, labels, strict=True):
        if verdict.status == "falsified":  # a replayed point of the box, misclassified
            point = np.asarray(verdict.counterexample.input, np.float64).reshape(4)
            assert np.all(point >= np.clip(x - eps, 0, 1)) and \
                np.all(point <= np.clip(x + eps, 0, 1))
            output = certifier.model(point[None]).data[0]
            assert np.max(np.delete(output, label)) >= output[label]
            assert verdict.details["natural_correct"] == (verdict.method != "natural")
        else:
            assert verdict.details["natural_correct"] and \
                verdict.details["adversarial_robust"]
