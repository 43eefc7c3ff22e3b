"""Memory-aware back-substitution: bound many rows in chunks that fit a memory budget.

Bounding every neuron of an intermediate layer with DeepPoly back-substitutes one row per
neuron, and each row carries a coefficient tensor over every feature of every layer it
crosses, for every sample, bound side and population member. The rows are independent,
so they are processed in chunks of

    rows per chunk = budget / (bytes per row),
    bytes per row  ≈ itemsize · P · S · B · (Σ feature sizes on the path)   (graph kept)
                     itemsize · P · S · B · (max feature size) · 6           (no gradient)

and the chunk results are concatenated; the bounds are identical to one big pass. Rows of
convolutional neurons carry windows instead of whole maps (:mod:`nobound.bounds.patches`,
which chunks them the same way with window sizes for feature sizes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import prod

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor, is_grad_enabled
from nobound.bounds import patches
from nobound.bounds.back_substitution import (
    SymbolicBounds,
    back_substitute,
    concretize_symbolic,
    identity_rows,
)
from nobound.bounds.network import Network
from nobound.bounds.regions import Box
from nobound.bounds.relu_relaxation import ReluRelaxation

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes


def rows_per_chunk(network: Network, end: int, batch: int, sides: int, itemsize: int,
                   memory_budget_bytes: int, stop: int = -1) -> int:
    """How many back-substitution rows of node ``end`` fit in the budget at once."""
    sizes = [prod(step.input_shape) for step in network.steps[stop + 1:end + 1]]
    sizes.append(prod(network.steps[end].output_shape) if end >= 0 else
                 prod(network.input_shape))
    members = network.population or 1
    if is_grad_enabled():
        per_row = itemsize * members * sides * batch * sum(sizes) * 4
    else:
        per_row = itemsize * members * sides * batch * max(sizes) * 6
    return max(1, int(memory_budget_bytes // max(per_row, 1)))


def bound_rows(network: Network, end: int, box: Box, make_rows: Callable[[int, int], Tensor],
               total_rows: int, sides: tuple[str, ...],
               relaxations: Mapping[int, ReluRelaxation], memory_budget_bytes: int,
               keep_symbolic: bool = False, stop: int = -1
               ) -> tuple[dict[str, Tensor], SymbolicBounds | None]:
    """Constant bounds {side: (P', B, R)} of ``total_rows`` rows of node ``end``.

    ``make_rows(start, stop)`` gives the rows' coefficients (P', 1, B', r, *shape).
    With ``keep_symbolic`` the symbolic bounds of all rows are returned too.
    """
    feature_ndim = len(network.input_shape) if stop < 0 else \
        len(network.steps[stop].output_shape)
    chunk = rows_per_chunk(network, end, box.batch_size, len(sides), box.lower.data.itemsize,
                           memory_budget_bytes, stop)
    pieces: dict[str, list[Tensor]] = {side: [] for side in sides}
    symbolic_pieces: list[SymbolicBounds] = []
    for start in range(0, total_rows, chunk):
        finish = min(start + chunk, total_rows)
        chunk_relaxations = {index: relaxation.rows(start, finish)
                             for index, relaxation in relaxations.items()}
        symbolic = back_substitute(network, end, make_rows(start, finish), sides,
                                   chunk_relaxations, stop)
        for side, value in concretize_symbolic(symbolic, box, feature_ndim).items():
            pieces[side].append(value)
        if keep_symbolic:
            symbolic_pieces.append(symbolic)
    bounds = {side: values[0] if len(values) == 1 else ops.concatenate(values, axis=-1)
              for side, values in pieces.items()}
    return bounds, _merge(symbolic_pieces) if keep_symbolic else None


def _merge(pieces: list[SymbolicBounds]) -> SymbolicBounds:
    """Concatenate chunked symbolic bounds along the row axis (axis 3).

    Every chunk crossed the same layers, so the chunks differ only in their row count.
    """
    if len(pieces) == 1:
        return pieces[0]
    first = pieces[0]
    coefficients = ops.concatenate([p.coefficients for p in pieces], axis=3)
    bias = None if first.bias is None else ops.concatenate([p.bias for p in pieces], axis=3)
    return SymbolicBounds(coefficients, bias, first.sides, first.shared)


def bound_node(network: Network, end: int, box: Box,
               relaxations: Mapping[int, ReluRelaxation],
               memory_budget_bytes: int) -> tuple[Tensor, Tensor]:
    """DeepPoly bounds (P', B, *shape) of every neuron of node ``end`` (one row each;
    on receptive-field windows where :mod:`nobound.bounds.patches` applies)."""
    shape = network.steps[end].output_shape
    like = box.lower
    if patches.applies(network, end, relaxations):
        bounds = patches.bound_neuron_rows(network, end, box, patches.all_neurons(shape, like),
                                           ("lower", "upper"), relaxations,
                                           memory_budget_bytes)
    else:
        bounds, _ = bound_rows(network, end, box,
                               lambda start, stop: identity_rows(shape, start, stop, like),
                               prod(shape), ("lower", "upper"), relaxations,
                               memory_budget_bytes)
    lower, upper = bounds["lower"], bounds["upper"]
    return (lower.reshape(lower.shape[:2] + shape), upper.reshape(upper.shape[:2] + shape))
