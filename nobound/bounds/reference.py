"""DeepPoly in plain dense NumPy: the reference the fast path is tested against.

The network is first written as explicit matrices (:mod:`nobound.exact.dense`):
z₁ = W₁ x + b₁, z_{k+1} = W_{k+1} ReLU(z_k) + b_{k+1}. Then, for every layer in order, every
neuron's row is back-substituted with dense matrix products (eq. 4), concretised over the
input box (eq. 2) and the ReLU relaxed (eq. 5); last, the rows of C. No shortcut of the fast
path is taken — no interval pre-check, no receptive-field windows, no row or member chunks,
no population axis — so it is slow (for small networks only) and short enough to check by
eye. Lower and upper sides are carried separately for clarity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nobound.exact.dense import DenseNetwork


def dense_deeppoly(net: DenseNetwork, lower: np.ndarray, upper: np.ndarray,
                   spec: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """DeepPoly bounds of C · f(x) (or f(x)) for x in [lower, upper] (B, *input_shape).

    Returns (lower (B, R), upper (B, R), [(l_k, u_k) of every ReLU input, each (B, n_k)]).
    """
    batch = len(lower)
    c = (np.reshape(lower, (batch, -1)) + np.reshape(upper, (batch, -1))) / 2
    r = (np.reshape(upper, (batch, -1)) - np.reshape(lower, (batch, -1))) / 2
    lines: list[tuple[Any, Any, Any]] = []  # per ReLU: λ, s, t, each (B, n_k)
    bounds = []
    for k in range(len(net.weights)):
        n = net.weights[k].shape[0]
        last = k == len(net.weights) - 1
        rows = np.broadcast_to(np.eye(n), (batch, n, n)) if not last or spec is None else \
            np.broadcast_to(spec, (batch, *np.shape(spec)[-2:]))
        A_l, A_u = rows.copy(), rows.copy()  # noqa: N806 - the paper's A
        a_l, a_u = np.zeros(rows.shape[:2]), np.zeros(rows.shape[:2])
        for j in range(k, -1, -1):  # back through z_{j+1} = W_{j+1} a_j + b_{j+1} (eq. 4)
            a_l, a_u = a_l + A_l @ net.biases[j], a_u + A_u @ net.biases[j]
            A_l, A_u = A_l @ net.weights[j], A_u @ net.weights[j]  # noqa: N806
            if j == 0:
                break
            lam, s, t = (v[:, None, :] for v in lines[j - 1])  # a_j = ReLU(z_j), eq. (5)
            a_l = a_l + (np.minimum(A_l, 0) * t).sum(-1)
            a_u = a_u + (np.maximum(A_u, 0) * t).sum(-1)
            A_l = np.maximum(A_l, 0) * lam + np.minimum(A_l, 0) * s  # noqa: N806
            A_u = np.maximum(A_u, 0) * s + np.minimum(A_u, 0) * lam  # noqa: N806
        low = np.einsum("brn,bn->br", A_l, c) - np.einsum("brn,bn->br", np.abs(A_l), r) + a_l
        high = np.einsum("brn,bn->br", A_u, c) + np.einsum("brn,bn->br", np.abs(A_u), r) + a_u
        if last:
            return low, high, bounds
        bounds.append((low, high))
        lines.append(_relu_lines(low, high))
    raise ValueError("the network has no layers")


def _relu_lines(l: np.ndarray, u: np.ndarray) -> tuple[Any, Any, Any]:  # noqa: E741
    """Eq. (5): λ = 1[u > −l] for l < 0 < u; exact lines for stable neurons."""
    unstable = (l < 0) & (u > 0)
    s = np.where(unstable, u / np.where(unstable, u - l, 1.0), (l >= 0).astype(float))
    t = np.where(unstable, -s * l, 0.0)
    lam = np.where(unstable, u > -l, l >= 0).astype(float)
    return lam, s, t
