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

from nobound.certify.beta_crown import Weight
from nobound.exact.dense import DenseNetwork

TIE_BREAK = 1e-3

Interval = tuple[np.ndarray, np.ndarray]


def unstable_mask(bounds: Interval, signs: np.ndarray) -> np.ndarray:
    lower, upper = bounds
    return (lower < 0) & (upper > 0) & (signs == 0)


def clamp_to_splits(bounds: list[Interval], signs: list[np.ndarray]) -> list[Interval]:
    """Pre-activation bounds with split neurons clamped: l ← max(l, 0) where z ≥ 0 is
    imposed, u ← min(u, 0) where z ≤ 0 is (valid on the sub-domain, which has the split)."""
    return [(np.where(s > 0, np.maximum(lo, 0.0), lo), np.where(s < 0, np.minimum(hi, 0.0), hi))
            for (lo, hi), s in zip(bounds, signs, strict=True)]


def intercepts(bounds: Interval, unstable: np.ndarray) -> np.ndarray:
    lower, upper = bounds
    width = np.where(unstable, upper - lower, 1.0)
    return np.where(unstable, -lower * upper / width, 0.0)


def score_tables(dense: DenseNetwork, bounds: list[Interval], signs: list[np.ndarray],
                 objective: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per hidden layer (N, n_k): the BaBSR score and the intercept score, −inf where a
    neuron cannot be split (stable or already split)."""
    scores: list[np.ndarray] = [np.zeros(0)] * len(bounds)
    fallback: list[np.ndarray] = [np.zeros(0)] * len(bounds)
    coefficients = objective
    for k in range(len(bounds) - 1, -1, -1):
        mu = Weight(dense.weights[k + 1]).rows_times(coefficients)
        unstable = unstable_mask(bounds[k], signs[k])
        gap = intercepts(bounds[k], unstable)
        # nan (inf bounds: −l u / (u − l) = inf/inf) must not hide an unstable neuron
        fallback[k] = np.where(unstable, np.nan_to_num(gap, nan=0.0), -np.inf)
        lower, upper = bounds[k]
        lower_gap = np.where(unstable, np.minimum(upper, -lower), 0.0)
        score = np.maximum(-mu, 0) * gap + TIE_BREAK * np.abs(mu) * lower_gap
        scores[k] = np.where(unstable, score, -np.inf)
        width = np.where(unstable, upper - lower, 1.0)
        slope = np.where(unstable, upper / width, (lower >= 0).astype(float))
        alpha = np.where(unstable, (upper > -lower).astype(float), slope)
        coefficients = np.maximum(mu, 0) * alpha + np.minimum(mu, 0) * slope
    return scores, fallback


def choose_neurons(dense: DenseNetwork, bounds: list[Interval], signs: list[np.ndarray],
                   objective: np.ndarray, rule: str = "babsr") -> list[tuple[int, int] | None]:
    """For each of N sub-problems, the (hidden layer, flat neuron) to split, or None when
    no neuron is unstable. ``objective`` is (N, outputs); arrays in bounds/signs (N, n_k)."""
    scores, fallback = score_tables(dense, bounds, signs, objective)
    choices: list[tuple[int, int] | None] = []
    for n in range(objective.shape[0]):
        choice = None
        # the intercept table is −inf exactly on stable neurons: any unstable one is taken,
        # even one whose score underflowed to 0 (l u below the smallest float)
        for table, floor in (((scores, 0.0), (fallback, -np.inf)) if rule == "babsr"
                             else ((fallback, -np.inf),)):
            best_value, best = floor, None
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
