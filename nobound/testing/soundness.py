"""Assertions for soundness: a claimed bound against values the network really takes.

A bound is sound when lower ≤ v ≤ upper for every value v the network attains on the
region. In float64 the only admissible slack is round-off: both the bound and the value
are sums of products, so their rounding error is a small multiple of machine epsilon
(2.2e-16) times the magnitude of the numbers involved. ``ROUNDOFF`` = 1e-9 relative to
(1 + |bound| + |value|) is millions of epsilons — far above round-off of these small
networks, far below any genuine error of a relaxation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import to_numpy
from nobound.nn.activation import ReLU

ROUNDOFF = 1e-9


def slack(*arrays: Any) -> np.ndarray:
    """ROUNDOFF · (1 + Σ |array|), broadcast."""
    return ROUNDOFF * (1.0 + sum(np.abs(np.asarray(a)) for a in arrays))


def assert_below(lower: Any, values: Any, what: str) -> None:
    """Every lower ≤ value (broadcast), up to round-off; the message names the worst case."""
    lower, values = np.asarray(lower), np.asarray(values)
    excess = lower - values - slack(lower, values)
    if np.any(excess > 0):
        worst = np.unravel_index(np.argmax(excess), excess.shape)
        low = np.broadcast_to(lower, excess.shape)[worst]
        value = np.broadcast_to(values, excess.shape)[worst]
        raise AssertionError(f"{what}: lower bound {low!r} > attained value {value!r} "
                             f"(by {low - value:.3e}) at index {worst}; "
                             f"{int(np.sum(excess > 0))} violations")


def assert_above(upper: Any, values: Any, what: str) -> None:
    """Every value ≤ upper (broadcast), up to round-off."""
    assert_below(-np.asarray(values), -np.asarray(upper), what + " (upper bound)")


def relu_inputs(model: Any, x: Any) -> dict[int, np.ndarray]:
    """{index of each ReLU in ``model.layers``: the input it receives} for inputs x."""
    seen = {}
    with no_grad():
        out = x if isinstance(x, Tensor) else Tensor(x)
        for index, layer in enumerate(model.layers):
            if isinstance(layer, ReLU):
                seen[index] = to_numpy(out.data)
            out = layer(out)
    return seen
