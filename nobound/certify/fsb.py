"""Filtered smart branching (FSB, De Palma et al., 2021): score cheaply, then bound.

BaBSR's score (:mod:`nobound.certify.branching`) estimates how much a split would raise
the bound; it is a first-order guess. FSB keeps it as a *filter*: per sub-domain, the
top-k neurons by the BaBSR score and the top-k by the intercept score are candidates, and
each candidate is judged by actually bounding its two children — all candidates of all
sub-domains in one batched beta-CROWN call (:mod:`nobound.certify.beta_crown`) with the
parent's multipliers (no optimisation: the evaluation must stay cheap) and the parent's
intermediate bounds clamped by the candidate split. The chosen neuron maximises the
*worse* child's bound: a split is only as good as the child that stays open.
"""

from __future__ import annotations

import numpy as np

from nobound.certify.beta_crown import (
    Multipliers,
    SplitDomains,
    bound_and_gradient,
    bound_children,
    initial_multipliers,
)
from nobound.certify.branching import Interval, clamp_to_splits, score_tables
from nobound.certify.problem import VerificationProblem
from nobound.exact.dense import DenseNetwork


def candidates(tables: list[np.ndarray], n: int, k: int) -> list[tuple[int, int]]:
    """The k best finite-scored (layer, neuron) pairs of sub-domain n in one score table."""
    flat = np.concatenate([t[n] for t in tables])
    order = np.argsort(-flat, kind="stable")[:k]
    sizes = np.cumsum([0] + [t.shape[1] for t in tables])
    chosen = []
    for index in order:
        if not np.isfinite(flat[index]):
            break
        layer = int(np.searchsorted(sizes, index, side="right") - 1)
        chosen.append((layer, int(index - sizes[layer])))
    return chosen


def choose_by_children(problem: VerificationProblem, dense: DenseNetwork,
                       bounds: list[Interval], signs: list[np.ndarray],
                       multipliers: Multipliers | None, rows: np.ndarray, k: int = 3
                       ) -> list[tuple[int, int] | None]:
    """For each of N sub-domains (arrays (N, n_j)) the split whose worse child has the
    highest bound, among the filtered candidates; None when nothing can be split.
    ``rows`` (N, outputs) is each sub-domain's best row, the one BaBSR scores against."""
    count = signs[0].shape[0]
    objective = np.stack([problem.spec] * count)
    scores, fallback = score_tables(dense, bounds, signs, rows)
    per_domain = []
    for n in range(count):
        chosen = candidates(scores, n, k)
        chosen += [c for c in candidates(fallback, n, k) if c not in chosen]
        per_domain.append(chosen)
    owners, splits = [], []
    for n, chosen in enumerate(per_domain):
        for layer, neuron in chosen:
            for sign in (1, -1):
                owners.append(n)
                splits.append((layer, neuron, sign))
    if not splits:
        return [None] * count
    owners_array = np.array(owners)
    child_signs = [s[owners_array].copy() for s in signs]
    for c, (layer, neuron, sign) in enumerate(splits):
        child_signs[layer][c, neuron] = sign
    child_bounds = clamp_to_splits([(lo[owners_array], hi[owners_array]) for lo, hi in bounds],
                                   child_signs)
    domains = SplitDomains([lo for lo, _ in child_bounds], [hi for _, hi in child_bounds],
                           child_signs, problem.lower.reshape(-1), problem.upper.reshape(-1))
    offset = np.broadcast_to(problem.offset, (len(owners), problem.num_rows))
    if multipliers is None:
        values, _ = bound_and_gradient(dense, domains, objective[owners_array], offset,
                                       initial_multipliers(domains, problem.num_rows),
                                       gradient=False)
    else:
        values = bound_children(dense, domains, objective[owners_array], offset,
                                multipliers, owners_array)
    child_values = values.max(axis=1)
    choices: list[tuple[int, int] | None] = []
    position = 0
    for chosen in per_domain:
        if not chosen:
            choices.append(None)
            continue
        pairs = child_values[position:position + 2 * len(chosen)].reshape(-1, 2)
        position += 2 * len(chosen)
        choices.append(chosen[int(np.argmax(pairs.min(axis=1)))])
    return choices
