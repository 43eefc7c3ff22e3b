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


def _report(excess: np.ndarray, bound: np.ndarray, values: np.ndarray, side: str,
            what: str) -> None:
    if np.any(excess > 0):
        worst = np.unravel_index(np.argmax(excess), excess.shape)
        claimed = np.broadcast_to(bound, excess.shape)[worst]
        value = np.broadcast_to(values, excess.shape)[worst]
        raise AssertionError(f"{what}: {side} bound {claimed!r} but the network attains "
                             f"{value!r} (off by {abs(claimed - value):.3e}) at index "
                             f"{tuple(int(i) for i in worst)}; "
                             f"{int(np.sum(excess > 0))} violations")


def assert_below(lower: Any, values: Any, what: str) -> None:
    """Every lower ≤ value (broadcast), up to round-off; the message names the worst case."""
    lower, values = np.asarray(lower), np.asarray(values)
    _report(lower - values - slack(lower, values), lower, values, "lower", what)


def assert_above(upper: Any, values: Any, what: str) -> None:
    """Every value ≤ upper (broadcast), up to round-off."""
    upper, values = np.asarray(upper), np.asarray(values)
    _report(values - upper - slack(upper, values), upper, values, "upper", what)


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
