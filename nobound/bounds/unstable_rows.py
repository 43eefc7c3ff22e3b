"""Back-substitute only the neurons whose stability is still unknown.

DeepPoly needs the bounds [l, u] of a ReLU's input only to choose its relaxation (eq. 5),
and for a *stable* neuron (l ≥ 0 or u ≤ 0) the relaxation is exact whatever l and u are.
So before paying one back-substitution row per neuron, a cheap sound *pre-check* bound
(intervals, eq. 3, started from the DeepPoly bounds of the previous ReLU) is computed;
neurons it proves stable keep the pre-check bound, and only the others get a DeepPoly
row. Each sample has its own unstable neurons: sample b's rows are the unit vectors of
its unstable neurons, padded with zero rows to the largest count R in the batch, so one
batched back-substitution of R ≤ N rows serves all (a gather puts the bounds back).

The result is DeepPoly's bound on every neuron the pre-check leaves unstable and the
pre-check's (same sign, same exact relaxation) on the others. Rows of a convolutional node
are back-substituted on their receptive fields (:mod:`nobound.bounds.patches`).
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds import patches
from nobound.bounds.chunking import bound_node, bound_rows
from nobound.bounds.network import Network
from nobound.bounds.regions import Box
from nobound.bounds.relu_relaxation import ReluRelaxation

DENSE_FRACTION = 0.75  # above this share of unstable rows, the plain identity rows are used


def bound_unstable_neurons(network: Network, end: int, box: Box,
                           relaxations: Mapping[int, ReluRelaxation], memory_budget_bytes: int,
                           prior: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Bounds (P', B, *shape) of node ``end``: DeepPoly where ``prior`` is unstable."""
    prior_lower, prior_upper = prior
    shape = network.steps[end].output_shape
    n = prod(shape)
    xp = prior_lower.xp
    lead = prior_lower.shape[:2]
    unstable = ((prior_lower.data < 0) & (prior_upper.data > 0)).reshape(*lead, n)
    rows = int(unstable.sum(axis=-1).max()) if unstable.size else 0
    if rows == 0:
        return prior_lower, prior_upper
    flat_prior = (prior_lower.reshape(*lead, n), prior_upper.reshape(*lead, n))
    if rows > DENSE_FRACTION * n:
        lower, upper = bound_node(network, end, box, relaxations, memory_budget_bytes)
        flat = (lower.reshape(lower.shape[:2] + (n,)), upper.reshape(upper.shape[:2] + (n,)))
    else:
        # per sample: the unstable neurons first (stable sort keeps their order)
        order = xp.argsort((~unstable).astype(xp.int8), axis=-1, kind="stable")[..., :rows]
        valid = xp.take_along_axis(unstable, order, axis=-1)
        like = box.lower

        def make_rows(start: int, stop: int) -> Tensor:
            chosen, keep = order[..., start:stop], valid[..., start:stop]
            one_hot = xp.zeros(chosen.shape + (n,), dtype=like.dtype)
            grid = xp.meshgrid(*(xp.arange(k) for k in chosen.shape), indexing="ij")
            one_hot[(*grid, chosen)] = keep
            return Tensor(one_hot.reshape(lead[0], 1, lead[1], stop - start, *shape))

        if patches.applies(network, end, relaxations):
            neurons = patches.chosen_neurons(order, valid, shape, like)
            bounds = patches.bound_neuron_rows(network, end, box, neurons, ("lower", "upper"),
                                               relaxations, memory_budget_bytes)
        else:
            bounds, _ = bound_rows(network, end, box, make_rows, rows, ("lower", "upper"),
                                   relaxations, memory_budget_bytes)
        slot = xp.where(unstable, xp.cumsum(unstable, axis=-1) - 1, 0)
        flat = tuple(ops.gather(bounds[side], slot, axis=-1) for side in ("lower", "upper"))
    lower = ops.where(unstable, flat[0], flat_prior[0])
    upper = ops.where(unstable, flat[1], flat_prior[1])
    full = lower.shape[:2] + shape
    return lower.reshape(full), upper.reshape(full)
