"""CROWN-IBP (Zhang et al. 2020): IBP bounds inside, one DeepPoly pass for the output.

DeepPoly needs concrete bounds [l, u] on every ReLU input to pick its relaxation (eq. 5),
and computing them by back-substitution costs one backward pass per neuron. CROWN-IBP
takes them from IBP instead (eq. 3, one cheap forward pass) and back-substitutes only
the rows of the specification C, relaxing every ReLU by eq. (5) with the area heuristic
on the IBP bounds. The cost becomes linear in depth; the precision lies between IBP and
DeepPoly in practice (§2.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nobound.autodiff.tensor import Tensor
from nobound.bounds.deeppoly import output_bounds
from nobound.bounds.ibp import interval_bounds
from nobound.bounds.linear_bounds import LinearBounds
from nobound.bounds.network import Network
from nobound.bounds.regions import Box
from nobound.bounds.relu_relaxation import deeppoly_relaxation


def crown_ibp_bounds(network: Network, box: Box, spec: Tensor | None = None,
                     splits: Mapping[int, Any] | None = None,
                     intermediate: Mapping[int, Any] | None = None,
                     memory_budget_bytes: int = 1 << 30, return_linear: bool = False,
                     ) -> tuple[Tensor, Tensor, dict[int, tuple[Tensor, Tensor]],
                                LinearBounds | None]:
    """CROWN-IBP bounds (P', B, R) of C · f (or f) over ``box``."""
    _, _, recorded = interval_bounds(network, box, splits, intermediate)
    relaxations = {index: deeppoly_relaxation(lower, upper)
                   for index, (lower, upper) in recorded.items()}
    bounds, symbolic = output_bounds(network, box, spec, relaxations, memory_budget_bytes,
                                     keep_symbolic=return_linear)
    linear = symbolic.to_linear_bounds(box.batch_size, network.input_shape) \
        if symbolic is not None else None
    return bounds["lower"], bounds["upper"], recorded, linear
