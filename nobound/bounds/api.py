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
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.deeppoly import exact_by_intervals
from nobound.bounds.linear_bounds import BoundResult, LinearBounds
from nobound.bounds.network import Network
from nobound.bounds.plan import DEFAULT_MEMORY_BUDGET, BoundsPlan
from nobound.bounds.regions import Box
from nobound.bounds.relaxation import RELAXATIONS, relaxation_named
from nobound.bounds.sample_groups import (
    MIN_GROUP,
    join_samples,
    plan_groups,
    row_counts,
    take_samples,
)
from nobound.bounds.specification import as_spec_tensor

METHODS = tuple(RELAXATIONS)


def resolve_method(method: str) -> str:
    """The canonical method name; unknown names raise a ValueError listing the choices."""
    return relaxation_named(method).name


def compute_bounds(model: Any, region: Box, method: str = "deeppoly", spec: Any = None,
                   params: Mapping[str, Tensor] | None = None, return_linear: bool = False,
                   splits: Mapping[int, Any] | None = None,
                   intermediate: Mapping[int, Any] | None = None,
                   alpha_steps: int = 20, alpha_step_size: float = 0.1,
                   alpha_init: str | float = "deeppoly",
                   memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
                   plan: BoundsPlan | None = None) -> BoundResult:
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
    * ``plan``: every execution choice at once (:class:`BoundsPlan`: budget, patches,
      unstable-row threshold, sample groups); it overrides ``memory_budget_bytes``. No
      choice changes a number.
    """
    relaxation = relaxation_named(method)
    if not isinstance(region, Box):
        raise TypeError(f"region must be a Box (see linf_ball), got {type(region).__name__}")
    plan = plan or BoundsPlan(memory_budget_bytes)
    network = Network.from_model(model, region.shape[1:], params, like=region.lower)
    _check_keys(network, splits, "splits", network.relu_indices)
    _check_keys(network, intermediate, "intermediate", network.activation_indices)
    spec_tensor = None
    if spec is not None:
        if len(network.output_shape) != 1:
            raise ValueError(f"a specification needs a flat network output, got "
                             f"{network.output_shape}")
        spec_tensor = as_spec_tensor(spec, region.batch_size, network.output_shape[0],
                                     region.lower)
    options = dict(alpha_steps=alpha_steps, alpha_step_size=alpha_step_size,
                   alpha_init=alpha_init)
    chunk = relaxation.members_per_chunk(network, region, plan)
    groups = _sample_groups(relaxation, network, region, splits, intermediate, plan)
    pieces, sizes = [], []
    for start in range(0, network.population or 1, chunk):
        stop = min(start + chunk, network.population or 1)
        members = network.members(start, stop)
        member_splits = _members(network, splits, start, stop)
        member_bounds = _members(network, intermediate, start, stop)
        if groups is None:
            pieces.append(relaxation.bound(members, region, spec_tensor, member_splits,
                                           member_bounds, plan, return_linear, options))
        else:
            pieces.append(join_samples([relaxation.bound(
                members, *take_samples(members, region, spec_tensor, member_splits,
                                       member_bounds, group), plan, return_linear, options)
                for group in groups], groups))
        sizes.append(stop - start)
    return _assemble(pieces, sizes, network.population is not None)


def _sample_groups(relaxation: Any, network: Network, region: Box,
                   splits: Mapping[int, Any] | None, intermediate: Mapping[int, Any] | None,
                   plan: BoundsPlan) -> list[Any] | None:
    """The plan's groups of samples (:mod:`nobound.bounds.sample_groups`), or None. The
    difficulty is estimated on the first population member alone: the members are
    perturbed copies of one network, and IBP over all of them at once would not respect
    the memory budget that the member chunks keep."""
    if plan.sample_groups == "never" or not relaxation.rows_per_sample \
            or region.batch_size < 2 * MIN_GROUP:
        return None
    counts = row_counts(network.members(0, 1), region, _members(network, splits, 0, 1),
                        _members(network, intermediate, 0, 1),
                        lambda net, end: not exact_by_intervals(net, end))
    return plan_groups(counts)


def _check_keys(network: Network, mapping: Mapping[int, Any] | None, name: str,
                allowed: list[int]) -> None:
    if not mapping:
        return
    relus = set(allowed)
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


def _assemble(pieces: list[BoundResult], sizes: list[int], has_population: bool) -> BoundResult:
    """Join member chunks and give every result its public shape: without a population
    the axis P' = 1 is dropped; with one, each chunk is filled to its member count (a
    bound that no member parameter reaches is shared) and the chunks are concatenated."""
    def finish(tensors: list[Tensor]) -> Tensor:
        if not has_population:
            return tensors[0].reshape(tensors[0].shape[1:])
        full = [t if t.shape[0] == size else ops.broadcast_to(t, (size, *t.shape[1:]))
                for t, size in zip(tensors, sizes, strict=True)]
        return full[0] if len(full) == 1 else ops.concatenate(full, axis=0)

    lower = finish([p.lower for p in pieces])
    upper = finish([p.upper for p in pieces])
    intermediate = {index: (finish([p.intermediate[index][0] for p in pieces]),
                            finish([p.intermediate[index][1] for p in pieces]))
                    for index in pieces[0].intermediate}
    linear = None
    if pieces[0].linear is not None:
        first = pieces[0].linear
        fields = [finish([getattr(p.linear, f) for p in pieces])
                  for f in ("A_l", "b_l", "A_u", "b_u")]
        linear = LinearBounds(*fields, first.input_shape, first.reference)
    tangent_slopes = {index: (finish([p.tangent_slopes[index][0] for p in pieces]),
                              finish([p.tangent_slopes[index][1] for p in pieces]))
                      for index in pieces[0].tangent_slopes}
    return BoundResult(lower, upper, pieces[0].method, intermediate, linear, tangent_slopes)
