"""``compute_bounds``: one entry point for every relaxation of the paper (§2.2).

    result = compute_bounds(model, linf_ball(x, eps), method="deeppoly",
                            spec=margin_spec(y, 10))
    result.lower, result.upper      # (B, K), or (P, B, K) with population parameters

Population parameters (a leading axis P on the parameters, as ``model(x, params)``
takes) bound P networks in one call; when one member's back-substitution would not fit
``memory_budget_bytes`` the members are processed in chunks, and rows of every
back-substitution are chunked to the same budget — the numbers do not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.alpha_crown import alpha_crown_bounds
from nobound.bounds.chunking import DEFAULT_MEMORY_BUDGET, rows_per_chunk
from nobound.bounds.crown_ibp import crown_ibp_bounds
from nobound.bounds.deeppoly import deeppoly_bounds, exact_by_intervals
from nobound.bounds.hbox import hbox_bounds
from nobound.bounds.ibp import interval_bounds
from nobound.bounds.linear_bounds import LinearBounds
from nobound.bounds.network import Network, ReluStep
from nobound.bounds.regions import Box
from nobound.bounds.specification import as_spec_tensor

METHODS = ("ibp", "hbox", "crown-ibp", "deeppoly", "alpha-crown")
ALIASES = {"crown": "deeppoly"}


@dataclass
class BoundResult:
    """Bounds of C · f(x) (or of f(x) without a specification) over the region.

    ``lower``/``upper``: (B, K) or (P, B, K). ``intermediate``: {index of a ReLU layer:
    (lower, upper) of that ReLU's input}, each (B, *neurons) or (P, B, *neurons).
    ``linear``: LinearBounds of the output rows w.r.t. the input (``return_linear``).
    """

    lower: Tensor
    upper: Tensor
    method: str
    intermediate: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    linear: LinearBounds | None = None


def resolve_method(method: str) -> str:
    """The canonical method name; unknown names raise a ValueError listing the choices."""
    name = str(method).strip().lower().replace("_", "-")
    name = ALIASES.get(name, name)
    if name not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose from "
                         f"{', '.join(METHODS)} (or 'crown' for deeppoly)")
    return name


def compute_bounds(model: Any, region: Box, method: str = "deeppoly", spec: Any = None,
                   params: Mapping[str, Tensor] | None = None, return_linear: bool = False,
                   splits: Mapping[int, Any] | None = None,
                   intermediate: Mapping[int, Any] | None = None,
                   alpha_steps: int = 20, alpha_step_size: float = 0.1,
                   alpha_init: str | float = "deeppoly",
                   memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> BoundResult:
    """Bound ``spec · model(x, params)`` for every x in ``region`` with ``method``.

    * ``region``: a :class:`Box` of inputs (B, *input_shape); ``params`` optionally
      replaces the model's parameters, with a leading population axis P on each.
    * ``method``: "ibp", "hbox", "crown-ibp", "deeppoly" (alias "crown"), "alpha-crown".
    * ``spec``: C of shape (B, K, outputs) or (K, outputs); None bounds the outputs.
    * ``return_linear``: also return the LinearBounds of the output rows w.r.t. x.
    * ``splits``: {ReLU layer index: int array (B, *neurons)}, +1 forces the ReLU input
      ≥ 0, −1 forces it ≤ 0, 0 leaves it free (branch and bound sub-problems).
    * ``intermediate``: {ReLU layer index: (lower, upper)} known bounds of ReLU inputs,
      intersected with the method's own.
    * ``alpha_*``: slope optimisation of alpha-CROWN (``alpha_init`` "deeppoly" or a
      slope; the paper's training variant is init 0.5, one step of size 0.5).
    * ``memory_budget_bytes``: the size of one chunk of back-substitution rows (and of
      population members / HBox samples); with gradients recorded the graph of every
      chunk is kept for the backward pass, so the peak is larger.
    """
    name = resolve_method(method)
    if not isinstance(region, Box):
        raise TypeError(f"region must be a Box (see linf_ball), got {type(region).__name__}")
    if memory_budget_bytes <= 0:
        raise ValueError(f"memory_budget_bytes must be positive, got {memory_budget_bytes}")
    network = Network.from_model(model, region.shape[1:], params, like=region.lower)
    _check_keys(network, splits, "splits")
    _check_keys(network, intermediate, "intermediate")
    spec_tensor = None
    if spec is not None:
        if len(network.output_shape) != 1:
            raise ValueError(f"a specification needs a flat network output, got "
                             f"{network.output_shape}")
        spec_tensor = as_spec_tensor(spec, region.batch_size, network.output_shape[0],
                                     region.lower)
    options = dict(alpha_steps=alpha_steps, alpha_step_size=alpha_step_size,
                   alpha_init=alpha_init, memory_budget_bytes=memory_budget_bytes)
    chunk = _members_per_chunk(network, region, name, memory_budget_bytes)
    pieces, sizes = [], []
    for start in range(0, network.population or 1, chunk):
        stop = min(start + chunk, network.population or 1)
        pieces.append(_bound(name, network.members(start, stop), region, spec_tensor,
                             _members(network, splits, start, stop),
                             _members(network, intermediate, start, stop),
                             return_linear, options))
        sizes.append(stop - start)
    return _assemble(name, pieces, sizes, network.population is not None)


def _bound(name: str, network: Network, box: Box, spec: Tensor | None,
           splits: Mapping[int, Any] | None, intermediate: Mapping[int, Any] | None,
           return_linear: bool, options: dict[str, Any]) -> tuple:
    budget = options["memory_budget_bytes"]
    if name == "ibp":
        lower, upper, recorded = interval_bounds(
            network if spec is None else network.with_spec(spec), box, splits, intermediate)
        linear = _constant_linear_bounds(lower, upper, network.input_shape, box) \
            if return_linear else None
        return _rows(lower), _rows(upper), recorded, linear
    if name == "hbox":
        lower, upper, recorded, linear = hbox_bounds(
            network if spec is None else network.with_spec(spec), box, splits, intermediate,
            return_linear, budget)
        return _rows(lower), _rows(upper), recorded, linear
    if name == "crown-ibp":
        return crown_ibp_bounds(network, box, spec, splits, intermediate, budget,
                                return_linear)
    if name == "deeppoly":
        return deeppoly_bounds(network, box, spec, splits, intermediate, budget, return_linear)
    return alpha_crown_bounds(network, box, spec, splits, intermediate, budget, return_linear,
                              steps=options["alpha_steps"], step_size=options["alpha_step_size"],
                              init=options["alpha_init"])


def _rows(bound: Tensor) -> Tensor:
    """(P', B, *output) → (P', B, R): output features as rows."""
    return bound.reshape(bound.shape[:2] + (-1,))


def _constant_linear_bounds(lower: Tensor, upper: Tensor, input_shape: tuple[int, ...],
                            box: Box) -> LinearBounds:
    """IBP's bounds as (trivial) linear bounds: A = 0, b = the constant bounds."""
    lower, upper = _rows(lower), _rows(upper)
    zeros = Tensor(lower.xp.zeros(lower.shape + tuple(input_shape), dtype=lower.dtype))
    return LinearBounds(zeros, lower, zeros, upper, tuple(input_shape), None)


def _check_keys(network: Network, mapping: Mapping[int, Any] | None, name: str) -> None:
    if not mapping:
        return
    relus = set(network.relu_indices)
    unknown = sorted(set(mapping) - relus)
    if unknown:
        raise ValueError(f"{name} refers to layers {unknown}, which are not ReLU layers "
                         f"(ReLUs are at {sorted(relus)})")


def _members(network: Network, mapping: Mapping[int, Any] | None, start: int,
             stop: int) -> Mapping[int, Any] | None:
    """Members start…stop−1 of splits/intermediate entries that carry a population axis
    (arrays of shape (P, B, *neurons); entries (B, *neurons) are shared)."""
    if not mapping or network.population is None:
        return mapping

    def pick(array: Any, neuron_ndim: int) -> Any:
        return array[start:stop] if array.ndim == neuron_ndim + 2 else array

    return network.map_layer_entries(mapping, pick)


def _members_per_chunk(network: Network, box: Box, name: str, budget: int) -> int:
    """How many population members to bound together so one member-chunk fits the budget."""
    population = network.population
    if population is None or population == 1:
        return 1
    itemsize = box.lower.data.itemsize
    if name in ("deeppoly", "alpha-crown"):
        worst = 0
        for step in network.steps:
            end = step.index - 1
            if isinstance(step, ReluStep) and not exact_by_intervals(network, end):
                # rows_per_chunk for one member: how many rows one member fits
                single = network.members(0, 1)
                rows = rows_per_chunk(single, end, box.batch_size, 2, itemsize, budget)
                wanted = min(prod(network.steps[end].output_shape), 16)
                worst = max(worst, (wanted + rows - 1) // rows)
        return population if worst == 0 else max(1, population // worst)
    return population


def _assemble(name: str, pieces: list[tuple], sizes: list[int],
              has_population: bool) -> BoundResult:
    """Join member chunks and give every result its public shape: without a population
    the axis P' = 1 is dropped; with one, each chunk is filled to its member count (a
    bound that no member parameter reaches is shared) and the chunks are concatenated."""
    def finish(tensors: list[Tensor]) -> Tensor:
        if not has_population:
            return tensors[0].reshape(tensors[0].shape[1:])
        full = [t if t.shape[0] == size else ops.broadcast_to(t, (size, *t.shape[1:]))
                for t, size in zip(tensors, sizes, strict=True)]
        return full[0] if len(full) == 1 else ops.concatenate(full, axis=0)

    lower = finish([p[0] for p in pieces])
    upper = finish([p[1] for p in pieces])
    intermediate = {index: (finish([p[2][index][0] for p in pieces]),
                            finish([p[2][index][1] for p in pieces]))
                    for index in pieces[0][2]}
    linear = None
    if pieces[0][3] is not None:
        first = pieces[0][3]
        fields = [finish([getattr(p[3], f) for p in pieces])
                  for f in ("A_l", "b_l", "A_u", "b_u")]
        linear = LinearBounds(*fields, first.input_shape, first.reference)
    return BoundResult(lower, upper, name, intermediate, linear)
