"""Interval pre-activation bounds of a dense network (eq. 3), clamped by splits.

For z = W v + b with l ≤ v ≤ u, eq. (3) of the paper gives

    (W(l + u) − |W|(u − l)) / 2 + b  ≤  z  ≤  (W(l + u) + |W|(u − l)) / 2 + b,

and ReLU maps [l, u] to [ReLU(l), ReLU(u)]. These bounds are valid big-M constants for
the MILP and valid domains for the triangle LP. A split forces a neuron's sign on the
sub-region it describes: +1 means z ≥ 0 (l ← max(l, 0)), −1 means z ≤ 0 (u ← min(u, 0));
clamping before propagating further keeps every later bound valid on that sub-region.
An empty interval (l > u) after clamping means the sub-region is empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nobound.exact.dense import DenseNetwork

Interval = tuple[np.ndarray, np.ndarray]


def affine_interval(weight: np.ndarray, bias: np.ndarray, lower: np.ndarray,
                    upper: np.ndarray) -> Interval:
    """Eq. (3): the tightest box around {W v + b : l ≤ v ≤ u}."""
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    mid = weight @ centre + bias
    spread = np.abs(weight) @ radius
    return mid - spread, mid + spread


def flat_splits(network: DenseNetwork, splits: Mapping[int, np.ndarray] | None,
                ) -> list[np.ndarray]:
    """Per hidden layer, the split signs (+1, −1, 0) as a flat int array (zeros if absent)."""
    splits = splits or {}
    unknown = set(splits) - set(network.relu_layers)
    if unknown:
        raise KeyError(f"splits name layers {sorted(unknown)}, but the ReLU layers are "
                       f"{network.relu_layers}")
    signs = []
    for layer, weight in zip(network.relu_layers, network.weights, strict=False):
        given = splits.get(layer)
        flat = np.zeros(weight.shape[0], np.int8) if given is None else \
            np.asarray(given).astype(np.int8).reshape(-1)
        if flat.shape != (weight.shape[0],):
            raise ValueError(f"split for layer {layer} has {flat.size} entries, expected "
                             f"{weight.shape[0]}")
        signs.append(flat)
    return signs


def apply_split(bounds: Interval, signs: np.ndarray) -> Interval:
    lower, upper = bounds
    return (np.where(signs > 0, np.maximum(lower, 0.0), lower),
            np.where(signs < 0, np.minimum(upper, 0.0), upper))


def interval_bounds(network: DenseNetwork, lower: np.ndarray, upper: np.ndarray,
                    splits: Mapping[int, np.ndarray] | None = None,
                    given: Sequence[Interval] | None = None) -> list[Interval]:
    """[(l₁, u₁), …, (l_L, u_L)]: bounds on every pre-activation z_k and on f = z_L.

    ``lower``/``upper`` are the input box (any shape with n₀ entries). ``given`` optionally
    holds other *valid* bounds on the hidden pre-activations to intersect with (the
    result is only as trustworthy as they are).
    """
    signs = flat_splits(network, splits)
    low = np.asarray(lower, np.float64).reshape(-1)
    high = np.asarray(upper, np.float64).reshape(-1)
    result: list[Interval] = []
    for index, (weight, bias) in enumerate(zip(network.weights, network.biases, strict=True)):
        if index:
            low, high = np.maximum(result[-1][0], 0.0), np.maximum(result[-1][1], 0.0)
        bounds = affine_interval(weight, bias, low, high)
        if index < network.num_hidden_layers:
            if given is not None:
                bounds = (np.maximum(bounds[0], np.asarray(given[index][0]).reshape(-1)),
                          np.minimum(bounds[1], np.asarray(given[index][1]).reshape(-1)))
            bounds = apply_split(bounds, signs[index])
        result.append(bounds)
    return result


def is_empty(bounds: Sequence[Interval]) -> bool:
    """Whether some interval is empty, i.e. the (split) region contains no input."""
    return any(bool(np.any(low > high)) for low, high in bounds)
