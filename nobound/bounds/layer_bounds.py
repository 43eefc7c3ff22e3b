"""The symbolic bounds A_l, b_l, A_u, b_u (eq. 4) of any layer, for inspection and export.

``layer_linear_bounds(model, region, layer)`` back-substitutes one row per neuron of the
output of ``layer`` down to the network input (or to the output of an earlier layer
``relative_to``), relaxing every ReLU on the way by eq. (5). The concrete bounds each ReLU
relaxation needs come from the chosen method: DeepPoly's own (deeppoly, alpha-crown —
alpha-CROWN's slopes are only optimised for the output), or IBP's / HBox's (crown-ibp,
ibp, hbox). The matrices are dense: (B, N, *x_shape) for N neurons.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.api import resolve_method
from nobound.bounds.back_substitution import BOTH_SIDES, back_substitute, identity_rows
from nobound.bounds.chunking import DEFAULT_MEMORY_BUDGET, rows_per_chunk
from nobound.bounds.deeppoly import deeppoly_relaxations
from nobound.bounds.hbox import hbox_bounds
from nobound.bounds.ibp import interval_bounds
from nobound.bounds.linear_bounds import LinearBounds
from nobound.bounds.network import Network
from nobound.bounds.regions import Box
from nobound.bounds.relu_relaxation import ReluRelaxation, deeppoly_relaxation


def _relaxations(network: Network, box: Box, method: str, splits: Mapping[int, Any] | None,
                 intermediate: Mapping[int, Any] | None,
                 budget: int) -> dict[int, ReluRelaxation]:
    if method in ("deeppoly", "alpha-crown"):
        relaxations, _ = deeppoly_relaxations(network, box, splits, intermediate, budget)
        return relaxations
    if method == "hbox":
        _, _, recorded, _ = hbox_bounds(network, box, splits, intermediate)
    else:
        _, _, recorded = interval_bounds(network, box, splits, intermediate)
    return {index: deeppoly_relaxation(lower, upper)
            for index, (lower, upper) in recorded.items()}


def layer_linear_bounds(model: Any, region: Box, layer: int, method: str = "deeppoly",
                        params: Mapping[str, Tensor] | None = None,
                        relative_to: int | None = None,
                        splits: Mapping[int, Any] | None = None,
                        intermediate: Mapping[int, Any] | None = None,
                        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> LinearBounds:
    """LinearBounds of every neuron of layer ``layer``'s output, w.r.t. the input.

    ``relative_to``: express them in the output of that earlier layer instead.
    Shapes: A (B, N, *x_shape) — (P, B, N, *x_shape) with population parameters.
    """
    method = resolve_method(method)
    full = Network.from_model(model, region.shape[1:], params, like=region.lower)
    layer = layer % len(full.steps) if layer < 0 else layer
    if not 0 <= layer < len(full.steps):
        raise ValueError(f"layer {layer} does not exist (the model has {len(full.steps)})")
    stop = -1 if relative_to is None else relative_to
    if not -1 <= stop < layer:
        raise ValueError(f"relative_to must name a layer before {layer}, got {relative_to}")
    network = Network(full.steps[:layer + 1], full.input_shape, full.population)
    relaxations = _relaxations(network, region, method, splits, intermediate,
                               memory_budget_bytes)
    shape = network.steps[layer].output_shape
    total = prod(shape)
    chunk = rows_per_chunk(network, layer, region.batch_size, 2, region.lower.data.itemsize,
                           memory_budget_bytes, stop)
    parts: list[LinearBounds] = []
    reference_shape = full.input_shape if stop < 0 else full.steps[stop].output_shape
    for start in range(0, total, chunk):
        finish = min(start + chunk, total)
        symbolic = back_substitute(network, layer,
                                   identity_rows(shape, start, finish, region.lower),
                                   BOTH_SIDES, relaxations, stop)
        parts.append(symbolic.to_linear_bounds(region.batch_size, reference_shape,
                                               relative_to))
    fields = [ops.concatenate([getattr(p, name) for p in parts], axis=2) if len(parts) > 1
              else getattr(parts[0], name) for name in ("A_l", "b_l", "A_u", "b_u")]
    if full.population is None:
        fields = [f.reshape(f.shape[1:]) for f in fields]
    return LinearBounds(*fields, reference_shape, relative_to)
