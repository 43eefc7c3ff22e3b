"""One object per bound method: what :func:`compute_bounds`, ``layer_linear_bounds`` and
training need to know about a relaxation, in one place. IBP's and HBox's objects are here
(one :class:`ForwardRelaxation` each, differing only in their forward pass);
DeepPoly's and CROWN-IBP's live beside their algorithm (:mod:`nobound.bounds.deeppoly`),
alpha-CROWN's in :mod:`nobound.bounds.alpha_crown`.

A :class:`Relaxation` has a ``name``; says whether it is ``differentiable`` (its bound's
gradient is the gradient of the bound it returns, so GRAD/RGS training may use it);
``bound``s a network over a box; gives the ``relu_relaxations`` (eq. 5 on its own [l, u])
that symbolic bounds of any layer are built from; and says how many population members fit
the plan's memory budget together (``members_per_chunk``, its cost per member) and whether
it back-substitutes rows for each sample's unstable neurons (``rows_per_sample``: then the
samples may be bounded in groups, :mod:`nobound.bounds.sample_groups`). Adding a
method means writing its module with its object and listing it in :data:`RELAXATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nobound.autodiff.tensor import Tensor
from nobound.bounds.alpha_crown import AlphaCrown
from nobound.bounds.deeppoly import CrownIbp, DeepPoly, ReluRelaxation, relax
from nobound.bounds.hbox import hbox_bounds
from nobound.bounds.ibp import interval_bounds
from nobound.bounds.linear_bounds import BoundResult, LinearBounds
from nobound.bounds.network import Network
from nobound.bounds.plan import BoundsPlan
from nobound.bounds.regions import Box

Bounds = dict[int, tuple[Tensor, Tensor]]


class Relaxation(Protocol):
    name: str
    differentiable: bool
    rows_per_sample: bool

    def bound(self, network: Network, box: Box, spec: Tensor | None, splits: Any,
              intermediate: Any, plan: BoundsPlan, return_linear: bool,
              options: dict[str, Any]) -> BoundResult:
        """Bounds (P', B, R) of C · f (or f) over ``box``, with the P' axis kept."""

    def relu_relaxations(self, network: Network, box: Box, splits: Any, intermediate: Any,
                         plan: BoundsPlan) -> tuple[dict[int, ReluRelaxation], Bounds]:
        """Eq. (5) for every ReLU on this method's bounds [l, u] of its input, and those."""

    def members_per_chunk(self, network: Network, box: Box, plan: BoundsPlan) -> int:
        """How many population members to bound together within the plan's budget."""


def _rows(bound: Tensor) -> Tensor:
    """(P', B, *output) → (P', B, R): output features as rows."""
    return bound.reshape(bound.shape[:2] + (-1,))


def _interval_forward(network: Network, box: Box, splits: Any, intermediate: Any,
                      return_linear: bool, plan: BoundsPlan
                      ) -> tuple[Tensor, Tensor, Bounds, LinearBounds | None]:
    """IBP (eq. 3) in HBox's form: bounds, recorded ReLU inputs, and its bounds as
    (trivial) linear bounds A = 0, b = the bounds when asked."""
    lower, upper, recorded = interval_bounds(network, box, splits, intermediate)
    linear = None
    if return_linear:
        zeros = Tensor(lower.xp.zeros(_rows(lower).shape + network.input_shape,
                                      dtype=lower.dtype))
        linear = LinearBounds(zeros, _rows(lower), zeros, _rows(upper), network.input_shape,
                              None)
    return lower, upper, recorded, linear


def _hbox_forward(network: Network, box: Box, splits: Any, intermediate: Any,
                  return_linear: bool, plan: BoundsPlan
                  ) -> tuple[Tensor, Tensor, Bounds, LinearBounds | None]:
    return hbox_bounds(network, box, splits, intermediate, return_linear, plan)


@dataclass(frozen=True)
class ForwardRelaxation:
    """IBP and HBox: one forward pass, the whole population at once, C folded into the
    last Linear layer. ``forward`` gives (lower, upper, {ReLU index: its input bounds},
    LinearBounds or None)."""

    name: str
    forward: Callable[..., tuple[Tensor, Tensor, Bounds, LinearBounds | None]]
    differentiable: bool = True
    rows_per_sample: bool = False

    def bound(self, network: Network, box: Box, spec: Tensor | None, splits: Any,
              intermediate: Any, plan: BoundsPlan, return_linear: bool,
              options: dict[str, Any]) -> BoundResult:
        lower, upper, recorded, linear = self.forward(
            network if spec is None else network.with_spec(spec), box, splits, intermediate,
            return_linear, plan)
        return BoundResult(_rows(lower), _rows(upper), self.name, recorded, linear)

    def relu_relaxations(self, network: Network, box: Box, splits: Any, intermediate: Any,
                         plan: BoundsPlan) -> tuple[dict[int, ReluRelaxation], Bounds]:
        recorded = self.forward(network, box, splits, intermediate, False, plan)[2]
        return {index: relax(network.steps[index], lower, upper)
                for index, (lower, upper) in recorded.items()}, recorded

    def members_per_chunk(self, network: Network, box: Box, plan: BoundsPlan) -> int:
        return network.population or 1


Interval = ForwardRelaxation("ibp", _interval_forward)   # eq. 3 (:mod:`nobound.bounds.ibp`)
HBox = ForwardRelaxation("hbox", _hbox_forward)          # :mod:`nobound.bounds.hbox`


RELAXATIONS: dict[str, Relaxation] = {r.name: r for r in (
    Interval, HBox, CrownIbp(), DeepPoly(), AlphaCrown())}
ALIASES = {"crown": "deeppoly"}


def relaxation_named(method: str) -> Relaxation:
    """The relaxation called ``method`` (case, '_' for '-', the alias 'crown' accepted);
    unknown names raise a ValueError listing the choices."""
    name = str(method).strip().lower().replace("_", "-")
    name = ALIASES.get(name, name)
    if name not in RELAXATIONS:
        raise ValueError(f"unknown bound method {method!r}; choose from "
                         f"{', '.join(RELAXATIONS)} (or 'crown' for deeppoly)")
    return RELAXATIONS[name]


__all__ = ["ALIASES", "RELAXATIONS", "AlphaCrown", "CrownIbp", "DeepPoly", "ForwardRelaxation",
           "HBox", "Interval", "Relaxation", "relaxation_named"]
