"""Input regions: boxes l ≤ x ≤ u, and the l∞ ball of the threat model (§2.1).

The adversary may move every input coordinate by at most ε, and a valid input stays in
the data range [low, high] (pixels in [0, 1]). The region of eq. (1) is therefore the box

    B_ε(x) = { x' : max(x − ε, low) ≤ x' ≤ min(x + ε, high) },

which is all every relaxation needs: a centre (l + u)/2 and a radius (u − l)/2 per
coordinate. The bounds are Tensors, so a region built from a differentiable input keeps
its gradient (never needed for certification, but free).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import unwrap


@dataclass(frozen=True)
class Box:
    """The axis-aligned box ``lower ≤ x ≤ upper``; both Tensors of shape (B, *input_shape)."""

    lower: Tensor
    upper: Tensor

    def __post_init__(self) -> None:
        lower = self.lower if isinstance(self.lower, Tensor) else Tensor(self.lower)
        upper = self.upper if isinstance(self.upper, Tensor) else Tensor(self.upper)
        if lower.shape != upper.shape:
            raise ValueError(f"box lower {lower.shape} and upper {upper.shape} differ in shape")
        if lower.ndim < 2:
            raise ValueError(f"a box needs a batch axis, got shape {lower.shape}")
        xp = lower.xp
        if bool(xp.any(lower.data > upper.data)):
            raise ValueError("box lower bound exceeds its upper bound")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lower.shape

    @property
    def batch_size(self) -> int:
        return self.lower.shape[0]

    @property
    def center(self) -> Tensor:
        """(l + u) / 2."""
        return (self.lower + self.upper) * 0.5

    @property
    def radius(self) -> Tensor:
        """(u − l) / 2, never negative."""
        return (self.upper - self.lower) * 0.5

    def contains(self, x: Any, tolerance: float = 0.0) -> Any:
        """Per batch element: whether every coordinate of ``x`` lies in the box."""
        x = unwrap(x)
        xp = self.lower.xp
        inside = (x >= self.lower.data - tolerance) & (x <= self.upper.data + tolerance)
        return xp.all(inside.reshape(inside.shape[0], -1), axis=1)

    def __getitem__(self, index: Any) -> Box:
        """The sub-box of some batch elements (``box[2:5]``)."""
        return Box(self.lower[index], self.upper[index])


def linf_ball(x: Any, eps: float | Any, low: float | None = 0.0,
              high: float | None = 1.0) -> Box:
    """B_ε(x) ∩ [low, high]: the box [max(x − ε, low), min(x + ε, high)] (eq. 1).

    ``eps`` is a number or an array broadcastable to ``x`` (one radius per sample);
    ``low``/``high`` None leave that side unclipped. ``x`` is (B, *input_shape).
    """
    x = x if isinstance(x, Tensor) else Tensor(x)
    xp = x.xp
    eps_array = xp.asarray(unwrap(eps), dtype=x.dtype)
    if bool(xp.any(eps_array < 0)) or not bool(xp.all(xp.isfinite(eps_array))):
        raise ValueError(f"eps must be finite and non-negative, got {eps}")
    if eps_array.ndim == 1 and x.ndim > 1 and eps_array.shape[0] == x.shape[0]:
        eps_array = eps_array.reshape((-1,) + (1,) * (x.ndim - 1))
    lower, upper = x - eps_array, x + eps_array
    if low is not None:
        lower = ops.maximum(lower, low)
        upper = ops.maximum(upper, low)
    if high is not None:
        upper = ops.minimum(upper, high)
        lower = ops.minimum(lower, high)
    return Box(lower, upper)


def box_from_bounds(lower: Any, upper: Any) -> Box:
    """A general box from arrays or Tensors (no clipping)."""
    return Box(lower if isinstance(lower, Tensor) else Tensor(lower),
               upper if isinstance(upper, Tensor) else Tensor(upper))
