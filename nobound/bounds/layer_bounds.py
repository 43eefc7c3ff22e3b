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
from nobound.bounds.deeppoly import back_substitute
from nobound.bounds.linear_bounds import LinearBounds
from nobound.bounds.network import Network
from nobound.bounds.plan import DEFAULT_MEMORY_BUDGET, BoundsPlan
from nobound.bounds.regions import Box
from nobound.bounds.relaxation import relaxation_named
from nobound.bounds.rows import dense_chunk, identity_rows


def layer_linear_bounds(model: Any, region: Box, layer: int, method: str = "deeppoly",
                        params: Mapping[str, Tensor] | None = None,
                        relative_to: int | None = None,
                        splits: Mapping[int, Any] | None = None,
                        intermediate: Mapping[int, Any] | None = None,
                        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
                        plan: BoundsPlan | None = None) -> LinearBounds:
    """LinearBounds of every neuron of layer ``layer``'s output, w.r.t. the input.

    ``relative_to``: express them in the output of that earlier layer instead.
    Shapes: A (B, N, *x_shape) — (P, B, N, *x_shape) with population parameters.
    """
    relaxation = relaxation_named(method)
    plan = plan or BoundsPlan(memory_budget_bytes)
    full = Network.from_model(model, region.shape[1:], params, like=region.lower)
    layer = layer % len(full.steps) if layer < 0 else layer
    if not 0 <= layer < len(full.steps):
        raise ValueError(f"layer {layer} does not exist (the model has {len(full.steps)})")
    stop = -1 if relative_to is None else relative_to
    if not -1 <= stop < layer:
        raise ValueError(f"relative_to must name a layer before {layer}, got {relative_to}")
    network = Network(full.steps[:layer + 1], full.input_shape, full.population)
    relaxations, _ = relaxation.relu_relaxations(network, region, splits, intermediate, plan)
    shape = network.steps[layer].output_shape
    total = prod(shape)
    chunk = dense_chunk(network, layer, region, plan, stop)
    parts: list[LinearBounds] = []
    reference_shape = full.input_shape if stop < 0 else full.steps[stop].output_shape
    for start in range(0, total, chunk):
        finish = min(start + chunk, total)
        A, a = back_substitute(network, layer, identity_rows(shape, start, finish, region.lower),
                               relaxations, stop)
        parts.append(LinearBounds.from_rows([(A.A, a)], region.batch_size, reference_shape,
                                            relative_to))
    fields = [ops.concatenate([getattr(p, name) for p in parts], axis=2) if len(parts) > 1
              else getattr(parts[0], name) for name in ("A_l", "b_l", "A_u", "b_u")]
    if full.population is None:
        fields = [f.reshape(f.shape[1:]) for f in fields]
    return LinearBounds(*fields, reference_shape, relative_to)
