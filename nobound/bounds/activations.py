"""S-shaped activations as the relaxations see them: Sigmoid and Tanh.

Both are increasing, convex on (−∞, 0] and concave on [0, ∞), with the derivative σ′
largest at 0 and decreasing away from it. On a box [l, u] of the input:

* **IBP**: [σ(l), σ(u)] — a monotone function maps a box to the box of its ends.
* **Two lines** λ v + t_l ≤ σ(v) ≤ s v + t for DeepPoly, CROWN-IBP and alpha-CROWN (which
  keeps them fixed), as DeepPoly (Singh et al., 2019) and CROWN (Zhang et al., 2018) bound
  S-shapes:

  - u ≤ 0 (convex part): the **chord** through (l, σ(l)) and (u, σ(u)) is above σ, the
    **tangent** at the midpoint d = (l + u)/2 is below it;
  - l ≥ 0 (concave part): the chord is below, the tangent at d above;
  - l < 0 < u (CROWN's rule): let d_u ∈ [0, u] be the point whose tangent passes through
    (l, σ(l)). The tangent at **any** d ∈ [d_u, u] is an upper line: above σ on the
    concave part [0, u], and above σ on the convex part [l, 0] because it is above σ at
    both of its ends — at 0 by concavity, at l because the tangent at d, evaluated at l,
    grows with d (its derivative in d is σ″(d)(l − d) > 0 for d > 0). The upper line is
    the tangent at max(d, m) with m = (l + u)/2: the midpoint's when it lies beyond d_u
    (the tangent through (l, σ(l)) would be needlessly steep there, loose near u), else
    the one through (l, σ(l)). This is CROWN's choice as auto_LiRPA implements it. When
    no such d_u ≤ u exists (the tangent at u passes below (l, σ(l))), the chord. The lower
    line mirrors it: the tangent at min(d′_l, m), with d′_l ∈ [l, 0] the point whose
    tangent passes through (u, σ(u)), or the chord. d_u and d′_l are found by bisection on
    the side that keeps the line sound: the upper end of d_u's bracket, the lower end of
    d′_l's.

  Where l = u the chord has slope 0 and both lines are the constant σ(l) (exact).

Every line is built with ``ops`` so bounds stay differentiable for certified training.
"""

from __future__ import annotations

from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.deeppoly import ReluRelaxation
from nobound.bounds.steps import Step
from nobound.nn.activation import Sigmoid, Tanh


class SShapeStep(Step):
    """An elementwise S-shaped activation (see the module doc)."""

    activation = True
    # DeepPoly keeps the intersection of its bounds of the input with the interval ones:
    # through several S-shaped layers the interval is the tighter on some neurons
    intersects_interval = True

    def __init__(self, index: int, shape: tuple[int, ...]) -> None:
        super().__init__(index, shape, shape)

    def function(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def derivative(self, value: Tensor) -> Tensor:
        """σ′ expressed through σ(v) (both functions here allow it)."""
        raise NotImplementedError

    def interval(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        return self.function(lower), self.function(upper)

    def relax(self, l: Tensor, u: Tensor) -> ReluRelaxation:  # noqa: E741 - the paper's l
        """The two lines of the module doc: a tangent where :meth:`tangent_ranges` allows
        one (at its default point), else the chord."""
        xp = l.xp
        chord, chord_intercept = self.chord(l, u)
        ranges = self.tangent_ranges(l.data, u.data)
        middle = (l + u) * 0.5
        lines = {}
        for side, (movable, _, _, point, at_middle) in ranges.items():
            # the midpoint stays a tensor: its tangent is differentiable in l and u
            slope, intercept = self.tangent(ops.where(at_middle, middle, Tensor(point)))
            lines[side] = (ops.where(movable, slope, chord),
                           ops.where(movable, intercept, chord_intercept))
        return ReluRelaxation(lines["lower"][0], lines["upper"][0], lines["upper"][1],
                              xp.zeros(l.shape, dtype=bool), lower_intercept=lines["lower"][1])

    def chord(self, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:  # noqa: E741
        """(slope, intercept) of the chord through (l, σ(l)) and (u, σ(u)); the constant
        σ(l) where l = u."""
        f_l, f_u = self.function(l), self.function(u)
        width = u - l
        safe_width = ops.where(width.data > 0, width, 1.0)
        slope = ops.where(width.data > 0, (f_u - f_l) / safe_width, 0.0)
        return slope, f_l - slope * l

    def tangent(self, point: Tensor) -> tuple[Tensor, Tensor]:
        """(slope, intercept) of the tangent at ``point``: σ′(d), σ(d) − σ′(d) d."""
        value = self.function(point)
        slope = self.derivative(value)
        return slope, value - slope * point

    def tangent_ranges(self, l: Any, u: Any) -> dict[str, tuple[Any, Any, Any, Any, Any]]:  # noqa: E741
        """Per line ("lower", "upper"): (movable, start, stop, point, at_middle) arrays —
        where ``movable`` the tangent at any d ∈ [start, stop] is a sound line (module
        doc: a convex box's lower line d ∈ [l, u], a concave box's upper line d ∈ [l, u],
        around 0 d ∈ [l, d′_l] below and [d_u, u] above), elsewhere the chord is used;
        ``point`` is DeepPoly's choice of d, ``at_middle`` where that is the midpoint.
        alpha-CROWN moves d within the range."""
        xp = Tensor(l).xp
        width_positive = u > l
        convex = u <= 0
        concave = (l >= 0) & ~convex
        mixed = ~convex & ~concave
        middle = (l + u) * 0.5
        up_point, up_found = self._through_end(l, u, upper=True)
        low_point, low_found = self._through_end(l, u, upper=False)
        lower_mixed = mixed & low_found
        upper_mixed = mixed & up_found
        lower_middle = convex | (lower_mixed & (middle <= low_point))
        upper_middle = concave | (upper_mixed & (middle >= up_point))
        return {
            "lower": ((convex | lower_mixed) & width_positive, l,
                      xp.where(convex, u, low_point), xp.where(lower_middle, middle, low_point),
                      lower_middle),
            "upper": ((concave | upper_mixed) & width_positive,
                      xp.where(concave, l, up_point), u,
                      xp.where(upper_middle, middle, up_point), upper_middle)}

    def _through_end(self, l: Any, u: Any, upper: bool) -> tuple[Any, Any]:  # noqa: E741
        """(d, found): the point whose tangent passes through the far end — for the upper
        line d ∈ [0, u] with tangent(l) = σ(l), for the lower line d ∈ [l, 0] with
        tangent(u) = σ(u); ``found`` is False where no such d exists (use the chord)."""
        xp = Tensor(l).xp

        def value(v: Any) -> Any:
            return self.function(Tensor(v)).data

        def tangent_at(d: Any, end: Any) -> Any:
            f_d = value(d)
            return f_d + self.derivative(Tensor(f_d)).data * (end - d)

        end = l if upper else u
        safe_l, safe_u = xp.minimum(l, 0.0), xp.maximum(u, 0.0)
        # the tangent at d evaluated at the far end minus σ there: increasing in d for the
        # upper line (d ≥ 0), increasing in d for the lower line (d ≤ 0) as well
        found = (tangent_at(safe_u, end) - value(end) > 0) if upper else \
            (tangent_at(safe_l, end) - value(end) < 0)
        low = xp.zeros_like(l) if upper else safe_l.copy()
        high = safe_u.copy() if upper else xp.zeros_like(u)
        for _ in range(BISECTION_STEPS):
            middle = (low + high) * 0.5
            above = tangent_at(middle, end) - value(end) >= 0
            if upper:   # keep high where the tangent is above σ(l)
                high, low = xp.where(above, middle, high), xp.where(above, low, middle)
            else:       # keep low where the tangent is below σ(u)
                low, high = xp.where(above, low, middle), xp.where(above, middle, high)
        return (high if upper else low), found


# Halvings of the tangent-point bracket: the bracket is at most |l| or u wide, so 60
# halvings reach float64 resolution for any box the relaxations meet.
BISECTION_STEPS = 60


class SigmoidStep(SShapeStep):
    """σ(v) = 1 / (1 + e⁻ᵛ);  σ′ = σ (1 − σ)."""

    def function(self, v: Tensor) -> Tensor:
        return Sigmoid()(v)

    def derivative(self, value: Tensor) -> Tensor:
        return value * (1.0 - value)


class TanhStep(SShapeStep):
    """tanh v;  tanh′ = 1 − tanh²."""

    def function(self, v: Tensor) -> Tensor:
        return Tanh()(v)

    def derivative(self, value: Tensor) -> Tensor:
        return 1.0 - value * value


def s_shape_step(index: int, layer: object, shape: tuple[int, ...]) -> Step | None:
    """The step of a Sigmoid or Tanh layer, else None."""
    if isinstance(layer, Sigmoid):
        return SigmoidStep(index, shape)
    if isinstance(layer, Tanh):
        return TanhStep(index, shape)
    return None
