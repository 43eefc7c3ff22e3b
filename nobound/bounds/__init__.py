"""Convex relaxations of neural networks with explicit symbolic bounds (§2.2).

One entry point, :func:`compute_bounds`, and the pieces it is made of: input regions,
specifications, :class:`LinearBounds` (eq. 2/4), and one module per relaxation — IBP,
HBox, DeepPoly/CROWN, CROWN-IBP and alpha-CROWN.
"""

from nobound.bounds.api import METHODS, compute_bounds, resolve_method
from nobound.bounds.layer_bounds import layer_linear_bounds
from nobound.bounds.linear_bounds import BoundResult, LinearBounds
from nobound.bounds.plan import DEFAULT_MEMORY_BUDGET, BoundsPlan
from nobound.bounds.regions import Box, box_from_bounds, linf_ball
from nobound.bounds.relaxation import RELAXATIONS, Relaxation, relaxation_named
from nobound.bounds.specification import fold_spec, margin_spec

__all__ = [
    "DEFAULT_MEMORY_BUDGET", "METHODS", "RELAXATIONS", "BoundResult", "BoundsPlan", "Box",
    "LinearBounds", "Relaxation", "box_from_bounds", "compute_bounds", "fold_spec",
    "layer_linear_bounds", "linf_ball", "margin_spec", "relaxation_named", "resolve_method",
]
