"""Networks the rigorous checker and branch and bound do not cover (Sigmoid, MaxPool) get
``unknown`` with the reason, never a traceback and never an unchecked ``certified``."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.certify.batched import certify_batch
from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.nn import Linear, Sequential
from nobound.nn.activation import Sigmoid, Tanh
from nobound.nn.init import initialise


@pytest.mark.parametrize("activation", [Sigmoid, Tanh])
def test_s_shaped_networks_are_never_certified_unchecked(activation) -> None:
    model = Sequential(Linear(4, 8, dtype=np.float64), activation(),
                       Linear(8, 3, dtype=np.float64))
    initialise(model, "kaiming", seed=0)
    certifier = Certifier(model, (4,), CertifierConfig(timeout=2.0,
                                                       robustness_attack_steps=5))
    x = np.full((2, 4), 0.5)
    labels = np.argmax(certifier.model(x).data, axis=1)
    labels[1] = (labels[1] + 1) % 3  # a natural error is still falsified
    first, second = certify_batch(certifier, x, labels, 0.01)
    assert first.status == "unknown" and "ReLUs only" in first.reason
    assert (second.status, second.method) == ("falsified", "natural")
