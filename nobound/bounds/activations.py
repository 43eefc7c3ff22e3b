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
  - l < 0 < u: with k = min(σ′(l), σ′(u)) ≤ σ′(v) for every v in [l, u] (σ′ is unimodal with
    its peak at 0), σ(v) − σ(l) ≥ k (v − l) and σ(u) − σ(v) ≥ k (u − v): the lower line
    through (l, σ(l)) and the upper line through (u, σ(u)), both of slope k.

  Where l = u the chord has slope 0 and both lines are the constant σ(l) (exact).

Every line is built with ``ops`` so bounds stay differentiable for certified training.
"""

from __future__ import annotations

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.deeppoly import ReluRelaxation
from nobound.bounds.steps import Step
from nobound.nn.activation import Sigmoid, Tanh


class SShapeStep(Step):
    """An elementwise S-shaped activation (see the module doc)."""

    activation = True

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
        xp = l.xp
        f_l, f_u = self.function(l), self.function(u)
        width = u - l
        safe_width = ops.where(width.data > 0, width, 1.0)
        chord = ops.where(width.data > 0, (f_u - f_l) / safe_width, 0.0)
        chord_intercept = f_l - chord * l
        middle = (l + u) * 0.5
        f_m = self.function(middle)
        tangent = ops.where(width.data > 0, self.derivative(f_m), 0.0)
        tangent_intercept = f_m - tangent * middle
        k = ops.minimum(self.derivative(f_l), self.derivative(f_u))
        convex = u.data <= 0
        concave = (l.data >= 0) & ~convex
        lower_slope = ops.where(convex, tangent, ops.where(concave, chord, k))
        lower_intercept = ops.where(convex, tangent_intercept,
                                    ops.where(concave, chord_intercept, f_l - k * l))
        upper_slope = ops.where(convex, chord, ops.where(concave, tangent, k))
        upper_intercept = ops.where(convex, chord_intercept,
                                    ops.where(concave, tangent_intercept, f_u - k * u))
        return ReluRelaxation(lower_slope, upper_slope, upper_intercept,
                              xp.zeros(l.shape, dtype=bool), lower_intercept=lower_intercept)


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
