"""Networks branch and bound does not cover (Sigmoid, Tanh) get ``unknown`` with the reason
where the whole-box bounds do not decide, never a traceback and never an unchecked
``certified``."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.certify.batched import certify_batch
from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.nn import Linear, Sequential
from nobound.nn.activation import Sigmoid, Tanh
from nobound.nn.init import initialise


@pytest.mark.parametrize("activation", [Sigmoid, Tanh])
def test_s_shaped_networks_are_certified_only_checked(activation) -> None:
    """The rigorous checker reads Sigmoid/Tanh (checker.checked_network): a whole-box proof
    counts once it checks; what the bounds leave open is unknown (branch and bound splits
    ReLUs only); a sample proved by the bounds alone is certified even though no dense
    ReLU form exists."""
    model = Sequential(Linear(4, 8, dtype=np.float64), activation(),
                       Linear(8, 3, dtype=np.float64))
    initialise(model, "kaiming", seed=0)
    certifier = Certifier(model, (4,), CertifierConfig(timeout=2.0,
                                                       robustness_attack_steps=5))
    x = np.full((3, 4), 0.5)
    labels = np.argmax(certifier.model(x).data, axis=1)
    labels[1] = (labels[1] + 1) % 3  # a natural error is still falsified
    small, natural = certify_batch(certifier, x[:2], labels[:2], 1e-4)
    (large,) = certify_batch(certifier, x[2:], labels[2:], 5.0, low=None, high=None)
    assert small.status == "certified" and small.details["proof_check"] == "passed"
    points = x[0] + np.random.default_rng(0).uniform(-1e-4, 1e-4, (2000, 4))
    assert np.all(np.argmax(certifier.model(points).data, axis=1) == labels[0])
    assert (natural.status, natural.method) == ("falsified", "natural")
    assert large.status in ("unknown", "falsified")
    if large.status == "unknown":
        assert "ReLUs only" in large.reason
