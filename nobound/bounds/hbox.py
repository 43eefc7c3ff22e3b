"""Hybrid Box, HBox (§2.2; the Hybrid Zonotope of Mirman et al. 2018).

A node is described by a *hybrid zonotope*

    v = c + G ε + β ⊙ ν,       ε ∈ [−1, 1]^m,  ν ∈ [−1, 1]^n,

with centre c, generator matrix G over the m = dim(x) input error terms (one per input
coordinate: the input box is c₀ + diag(r₀) ε), and a per-neuron box radius β. Its
concrete bounds are c ± (Σ_k |G_k| + β).

* Affine y = W v + b (Zonotope, exact in the ε part):  c' = W c + b,  G' = W G,
  and the box part is propagated as IBP does (eq. 3):  β' = |W| β.
* ReLU, per neuron with bounds [l, u]: stable active (l ≥ 0) — unchanged (exact);
  stable inactive (u ≤ 0) — 0 (exact); unstable — the IBP box [0, u] (Fig. 2a): the
  neuron's generators are dropped and it becomes c = u/2, β = u/2: a single box error
  term per neuron.

So the representation never grows: m error terms plus one box radius per neuron, whatever
the depth (constant instead of linear size, unlike DeepZ). Every step is exact or the IBP
step, and an affine image of the box hull contains the affine image of the zonotope, so
HBox ⊆ IBP at every layer.

Linear bounds: the ε terms are exactly linear in x (ε_k = (x_k − c₀_k)/r₀_k where
r₀_k > 0), so v ∈ G/r₀ · x + c − G·c₀/r₀ ± β — the constant β gives the lower/upper gap.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.ibp import with_population_axis
from nobound.bounds.linear_bounds import LinearBounds
from nobound.bounds.network import Network, ReluStep
from nobound.bounds.plan import BoundsPlan
from nobound.bounds.regions import Box
from nobound.bounds.splits import refine_bounds


def _input_generators(radius: Tensor) -> Tensor:
    """diag(r₀) as G of shape (1, B, m, *x): error term k moves input coordinate k."""
    batch, shape = radius.shape[0], radius.shape[1:]
    m = prod(shape)
    xp = radius.xp
    eye = Tensor(xp.eye(m, dtype=radius.dtype).reshape((1, m, *shape)))
    return (eye * radius.reshape((batch, 1, *shape))).reshape((1, batch, m, *shape))


def hbox_bounds(network: Network, box: Box, splits: Mapping[int, Any] | None = None,
                intermediate: Mapping[int, Any] | None = None, return_linear: bool = False,
                plan: BoundsPlan | None = None
                ) -> tuple[Tensor, Tensor, dict[int, tuple[Tensor, Tensor]],
                           LinearBounds | None]:
    """HBox bounds (P', B, *output) of the network output over ``box``.

    Returns (lower, upper, {ReLU index: pre-activation bounds}, LinearBounds or None);
    the LinearBounds have shape (P', B, outputs, *x) (output features flattened to rows).
    The generators take m · (largest layer) numbers per sample and member, so the batch
    is processed in chunks that fit the plan's memory budget.
    """
    members = network.population or 1
    largest = max([prod(network.input_shape)] + [prod(s.output_shape) for s in network.steps])
    per_sample = box.lower.data.itemsize * members * prod(network.input_shape) * largest * 3
    chunk = max(1, (plan or BoundsPlan()).memory_budget_bytes // per_sample)
    if chunk >= box.batch_size:
        return _hbox(network, box, splits, intermediate, return_linear)
    pieces = [_hbox(network.samples(start, start + chunk), box[start:start + chunk],
                    _batch_slice(network, splits, start, start + chunk),
                    _batch_slice(network, intermediate, start, start + chunk), return_linear)
              for start in range(0, box.batch_size, chunk)]

    def join(tensors: list[Tensor]) -> Tensor:
        return ops.concatenate(tensors, axis=1)

    recorded = {index: (join([p[2][index][0] for p in pieces]),
                        join([p[2][index][1] for p in pieces])) for index in pieces[0][2]}
    linear = None
    if return_linear:
        linear = LinearBounds(*(join([getattr(p[3], name) for p in pieces])
                                for name in ("A_l", "b_l", "A_u", "b_u")),
                              network.input_shape, None)
    return join([p[0] for p in pieces]), join([p[1] for p in pieces]), recorded, linear


def _batch_slice(network: Network, mapping: Mapping[int, Any] | None, start: int,
                 stop: int) -> Mapping[int, Any] | None:
    """Batch elements start…stop−1 of per-ReLU arrays (B, *n) or (P, B, *n)."""
    if not mapping:
        return mapping

    def pick(array: Any, neuron_ndim: int) -> Any:
        return array[:, start:stop] if array.ndim == neuron_ndim + 2 else array[start:stop]

    return network.map_layer_entries(mapping, pick)


def _hbox(network: Network, box: Box, splits: Mapping[int, Any] | None,
          intermediate: Mapping[int, Any] | None, return_linear: bool
          ) -> tuple[Tensor, Tensor, dict[int, tuple[Tensor, Tensor]], LinearBounds | None]:
    center = with_population_axis(box.center)
    generators = _input_generators(box.radius)
    box_radius = None
    recorded: dict[int, tuple[Tensor, Tensor]] = {}
    for step in network.steps:
        if not step.activation:
            center = step.forward(center)
            generators = step.linear(generators)
            box_radius = None if box_radius is None else step.forward_abs(box_radius)
            continue
        spread = _spread(generators, box_radius, len(step.input_shape))
        lower, upper = refine_bounds(step.index, center - spread, center + spread,
                                     intermediate, splits)
        recorded[step.index] = (lower, upper)
        if not isinstance(step, ReluStep):  # another activation: its interval image, a box
            lower, upper = step.interval(lower, upper)
            center, box_radius = (upper + lower) * 0.5, (upper - lower) * 0.5
            shape = generators.shape[:3] + step.output_shape  # (pooling may change shapes)
            generators = Tensor(generators.xp.zeros(shape, dtype=generators.dtype))
            continue
        active = lower.data >= 0
        unstable = (lower.data < 0) & (upper.data > 0)
        half_upper = ops.where(unstable, upper * 0.5, 0.0)
        center = ops.where(active, center, half_upper)
        box_radius = half_upper if box_radius is None else \
            ops.where(active, box_radius, half_upper)
        mask = active.reshape(active.shape[:2] + (1,) + active.shape[2:])
        generators = generators * Tensor(mask.astype(generators.dtype))
    spread = _spread(generators, box_radius, len(network.output_shape))
    linear = _linear_bounds(center, generators, box_radius, box, network) \
        if return_linear else None
    return center - spread, center + spread, recorded, linear


def _spread(generators: Tensor, box_radius: Tensor | None, neuron_ndim: int) -> Tensor:
    """Σ_k |G_k| + β: the radius of the hybrid zonotope's interval hull."""
    spread = ops.abs(generators).sum(axis=generators.ndim - neuron_ndim - 1)
    return spread if box_radius is None else spread + box_radius


def _linear_bounds(center: Tensor, generators: Tensor, box_radius: Tensor | None,
                   box: Box, network: Network) -> LinearBounds:
    """v ∈ (G/r₀) x + c − (G/r₀) c₀ ± β over the input box, as LinearBounds."""
    input_shape = network.input_shape
    m = prod(input_shape)
    xp = generators.xp
    population, batch = generators.shape[:2]
    rows = prod(generators.shape[3:])
    per_term = generators.reshape(population, batch, m, rows)
    radius = box.radius.data.reshape(1, batch, m, 1)
    inverse = Tensor(xp.where(radius > 0, 1.0 / xp.where(radius > 0, radius, 1.0), 0.0))
    coefficients = ops.swapaxes(per_term * inverse, -1, -2)  # (P', B, rows, m)
    input_center = box.center.reshape(1, batch, m, 1)
    offset = ops.matmul(coefficients, input_center).reshape(population, batch, rows)
    constant = center.reshape(center.shape[:2] + (rows,)) - offset
    gap = 0.0 if box_radius is None else box_radius.reshape(box_radius.shape[:2] + (rows,))
    coefficients = coefficients.reshape(population, batch, rows, *input_shape)
    return LinearBounds(coefficients, constant - gap, coefficients, constant + gap,
                        input_shape, None)
