"""Samples bounded in groups of similar difficulty: DeepPoly's rows without the padding.

DeepPoly gives each sample one back-substitution row per neuron its interval pre-check
leaves unstable, and one batched pass serves the whole batch, so every sample carries as
many rows as the sample with the most (the others' are zero rows, :mod:`nobound.bounds.rows`).
On trained networks the counts differ widely between samples (cnn5 trained with IBP, its
fully connected layer: 32 unstable neurons per sample on average, 75 at most), and most of
the work is padding.

Every sample's bounds depend on that sample alone (the network's maps, batch statistics of
a train-mode BatchNorm included, are fixed before bounding), so the batch may be cut into
groups, each bounded on its own, and the results put back in order — the same numbers, up
to the order of sums inside the matrix products. The groups are made from a cheap
estimate: IBP's count of unstable neurons per sample and ReLU (eq. 3), each weighted by
what a row costs there (the coefficients it holds on the way back to the input). Samples
are sorted by that estimate and cut into 2, 4, 8, … equal groups of at least
:data:`MIN_GROUP` samples for as long as each doubling saves at least :data:`MIN_SAVING` of
the padded work — never when the counts are alike (random weights: every neuron unstable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import get_array_module, to_numpy
from nobound.bounds.ibp import interval_bounds
from nobound.bounds.linear_bounds import BoundResult, LinearBounds
from nobound.bounds.network import Network, ReluStep
from nobound.bounds.regions import Box
from nobound.bounds.rows import row_sizes

MIN_GROUP = 16      # samples: smaller groups make the matrix products too thin
MIN_SAVING = 0.1    # of the padded work, for each doubling of the number of groups


def padded_work(counts: np.ndarray, groups: list[np.ndarray]) -> float:
    """Σ over groups of |g| · Σ_k max_{s ∈ g} counts[s, k]: the rows a batched pass per
    group carries (``counts`` (B, L) already weighted per layer)."""
    return float(sum(len(g) * counts[g].max(axis=0).sum() for g in groups))


def plan_groups(counts: np.ndarray, min_group: int = MIN_GROUP,
                min_saving: float = MIN_SAVING) -> list[np.ndarray] | None:
    """Sample indices per group (module doc), or None when one batch is as good."""
    batch = counts.shape[0]
    order = np.argsort(counts.sum(axis=1), kind="stable")
    best, best_work = None, padded_work(counts, [order])
    if best_work == 0:  # no rows to pad (e.g. no ReLU after the first)
        return None
    parts = 2
    while batch // parts >= min_group:
        groups = np.array_split(order, parts)
        work = padded_work(counts, groups)
        if work > (1.0 - min_saving) * best_work:
            break
        best, best_work = groups, work
        parts *= 2
    return best


def row_counts(network: Network, box: Box, splits: Mapping[int, Any] | None,
               intermediate: Mapping[int, Any] | None,
               needs_rows: Callable[[Network, int], bool]) -> np.ndarray:
    """(B, L): per sample, IBP's unstable neurons at each ReLU whose input
    ``needs_rows(network, end)``, times the coefficients one of its rows holds on the way
    back to the input (summed over the population members of ``network``)."""
    with no_grad():  # an estimate: nothing to differentiate
        _, _, recorded = interval_bounds(network, box, splits, intermediate)
    columns = []
    for index, (low, high) in recorded.items():
        end = index - 1
        if not isinstance(network.steps[index], ReluStep) or not needs_rows(network, end):
            continue
        unstable = (low.data < 0) & (high.data > 0)
        # counted where the bounds are; only (B,) numbers come to the host
        per_sample = to_numpy(unstable.reshape(unstable.shape[0], unstable.shape[1], -1)
                              .sum(axis=(0, 2)))
        cost = sum(row_sizes(network, end))
        columns.append(per_sample.astype(float) * cost)
    if not columns:
        return np.zeros((box.batch_size, 0))
    return np.stack(columns, axis=1)


def take_samples(network: Network, box: Box, spec: Tensor | None,
                 splits: Mapping[int, Any] | None, intermediate: Mapping[int, Any] | None,
                 samples: np.ndarray) -> tuple[Box, Tensor | None, Any, Any]:
    """The box, C, splits and known bounds of the samples ``samples`` (in that order);
    each array is indexed on its own device (splits may be given as host arrays)."""
    index = box.lower.xp.asarray(samples)

    def pick(array: Any, neuron_ndim: int) -> Any:
        own = get_array_module(array).asarray(samples)
        return array[:, own] if array.ndim == neuron_ndim + 2 else array[own]

    return (Box(box.lower[index], box.upper[index]),
            None if spec is None else spec[index],
            None if not splits else network.map_layer_entries(splits, pick),
            None if not intermediate else network.map_layer_entries(intermediate, pick))


def join_samples(pieces: list[BoundResult], groups: list[np.ndarray]) -> BoundResult:
    """The groups' results, each (P', b_g, …), as one (P', B, …) in the original order."""
    order = np.concatenate(groups)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))

    def join(tensors: list[Tensor]) -> Tensor:
        members = max(t.shape[0] for t in tensors)
        full = [t if t.shape[0] == members else
                ops.broadcast_to(t, (members, *t.shape[1:])) for t in tensors]
        joined = ops.concatenate(full, axis=1)
        return joined[:, joined.xp.asarray(inverse)]

    first = pieces[0]
    intermediate = {index: tuple(join([p.intermediate[index][side] for p in pieces])
                                 for side in (0, 1))
                    for index in first.intermediate}
    linear = None
    if first.linear is not None:
        fields = [join([getattr(p.linear, name) for p in pieces])
                  for name in ("A_l", "b_l", "A_u", "b_u")]
        linear = LinearBounds(*fields, first.linear.input_shape, first.linear.reference)
    tangent_slopes = {index: tuple(join([p.tangent_slopes[index][side] for p in pieces])
                                   for side in (0, 1))
                      for index in first.tangent_slopes}
    return BoundResult(join([p.lower for p in pieces]), join([p.upper for p in pieces]),
                       first.method, intermediate, linear, tangent_slopes)


__all__ = ["MIN_GROUP", "MIN_SAVING", "join_samples", "padded_work", "plan_groups",
           "row_counts", "take_samples"]
