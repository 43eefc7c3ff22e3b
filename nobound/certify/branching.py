"""Which neuron to split: a BaBSR-style score with the intercept heuristic as fallback.

For a sub-domain with pre-activation bounds [l, u], propagate the objective row c back
through the dense network as DeepPoly does for a lower bound: μ_k = ν_{k+1} W_{k+1} is the
coefficient of the ReLU *output* a_k, and ν_k = μ_k⁺ α_k + μ_k⁻ s_k that of its input z_k.
An unstable neuron (l < 0 < u) whose μ is negative enters the lower bound through its
upper line, losing μ · (−l u / (u − l)) — the intercept of that line. Splitting it removes
that loss, so (Bunel et al., 2020, BaBSR)

    score = max(−μ, 0) · (−l u / (u − l))  +  ε · |μ| · min(u, −l),

the second term ranking the neurons whose loss sits in the lower line instead. When no
unstable neuron scores above zero the fallback is the intercept alone, −l u / (u − l)
(the largest |l·u|/(u − l)), which needs no objective at all.
"""

from __future__ import annotations

import numpy as np

from nobound.exact.dense import DenseNetwork

TIE_BREAK = 1e-3

Interval = tuple[np.ndarray, np.ndarray]


def unstable_mask(bounds: Interval, signs: np.ndarray) -> np.ndarray:
    lower, upper = bounds
    return (lower < 0) & (upper > 0) & (signs == 0)


def intercepts(bounds: Interval, unstable: np.ndarray) -> np.ndarray:
    lower, upper = bounds
    width = np.where(unstable, upper - lower, 1.0)
    return np.where(unstable, -lower * upper / width, 0.0)


def choose_neurons(dense: DenseNetwork, bounds: list[Interval], signs: list[np.ndarray],
                   objective: np.ndarray, rule: str = "babsr") -> list[tuple[int, int] | None]:
    """For each of N sub-problems, the (hidden layer, flat neuron) to split, or None when
    no neuron is unstable. ``objective`` is (N, outputs); arrays in bounds/signs (N, n_k)."""
    count = objective.shape[0]
    scores: list[np.ndarray] = [np.zeros(0)] * len(bounds)
    fallback: list[np.ndarray] = [np.zeros(0)] * len(bounds)
    coefficients = objective
    for k in range(len(bounds) - 1, -1, -1):
        mu = coefficients @ dense.weights[k + 1]
        unstable = unstable_mask(bounds[k], signs[k])
        gap = intercepts(bounds[k], unstable)
        fallback[k] = np.where(unstable, gap, -np.inf)
        lower, upper = bounds[k]
        if rule == "babsr":
            lower_gap = np.where(unstable, np.minimum(upper, -lower), 0.0)
            score = np.maximum(-mu, 0) * gap + TIE_BREAK * np.abs(mu) * lower_gap
            scores[k] = np.where(unstable, score, -np.inf)
        width = np.where(unstable, upper - lower, 1.0)
        slope = np.where(unstable, upper / width, (lower >= 0).astype(float))
        alpha = np.where(unstable, (upper > -lower).astype(float), slope)
        coefficients = np.maximum(mu, 0) * alpha + np.minimum(mu, 0) * slope
    choices: list[tuple[int, int] | None] = []
    for n in range(count):
        choice = None
        for table in ((scores, fallback) if rule == "babsr" else (fallback,)):
            best_value, best = 0.0, None
            for k, layer_scores in enumerate(table):
                if layer_scores.size == 0:
                    continue
                neuron = int(np.argmax(layer_scores[n]))
                if layer_scores[n, neuron] > best_value:
                    best_value, best = float(layer_scores[n, neuron]), (k, neuron)
            if best is not None:
                choice = best
                break
        choices.append(choice)
    return choices
