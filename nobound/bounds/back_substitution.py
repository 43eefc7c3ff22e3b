"""Back-substitution: the backward pass shared by DeepPoly, CROWN-IBP and alpha-CROWN.

To bound rows of a node z_k (a specification C, or every neuron of a ReLU's input), start
from the trivial linear bounds  C z_k ≤ C z_k ≤ C z_k  and replace each layer's output by
an expression in its input, walking back to the network input (eq. 4):

* affine  z_i = W z_{i−1} + b:   A z_i = (A W) z_{i−1} + A b                 (exact);
* ReLU    z_i = ReLU(v), λ v ≤ z_i ≤ s v + t (eq. 5): for the *lower* bound a positive
  coefficient takes the lower line and a negative one the upper line,

      A z_i ≥ (A⁺ λ + A⁻ s) v + A⁻ t,        A z_i ≤ (A⁺ s + A⁻ λ) v + A⁺ t.

Both sides are carried in one tensor of shape (P', S, B', R, *features): population,
bound side (S = 2: lower, upper; S = 1 while the sides still coincide, i.e. before the
first ReLU), batch (B' = 1 while the coefficients do not yet depend on the sample), rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import prod

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.linear_bounds import LinearBounds, flat_column
from nobound.bounds.network import Network, ReluStep
from nobound.bounds.regions import Box
from nobound.bounds.relu_relaxation import ReluRelaxation

BOTH_SIDES = ("lower", "upper")


@dataclass
class SymbolicBounds:
    """Coefficients (P', S, B', R, *x_shape) and bias (P', S, B', R) or None.

    ``sides`` names the bound side of each S entry; ``shared`` means one entry serves
    every side (no ReLU was crossed, so lower and upper coefficients are equal).
    """

    coefficients: Tensor
    bias: Tensor | None
    sides: tuple[str, ...]
    shared: bool

    def side(self, name: str) -> tuple[Tensor, Tensor | None]:
        """(A, b) of one side, with the S axis removed: (P', B', R, *x), (P', B', R)."""
        if not self.shared and name not in self.sides:
            raise ValueError(f"the {name} side was not computed (sides: {self.sides})")
        position = 0 if self.shared else self.sides.index(name)
        coefficients = self.coefficients[:, position]
        bias = None if self.bias is None else self.bias[:, min(position,
                                                               self.bias.shape[1] - 1)]
        return coefficients, bias

    def to_linear_bounds(self, batch: int, input_shape: tuple[int, ...],
                         reference: int | None = None) -> LinearBounds:
        """Public LinearBounds (P', B, R, *x) — the side axis split, B' broadcast to B."""
        parts = []
        for side in BOTH_SIDES:
            coefficients, bias = self.side(side)
            shape = (coefficients.shape[0], batch) + coefficients.shape[2:]
            coefficients = ops.broadcast_to(coefficients, shape)
            if bias is None:
                bias = Tensor(coefficients.xp.zeros(shape[:3], dtype=coefficients.dtype))
            parts += [coefficients, ops.broadcast_to(bias, (bias.shape[0], *shape[1:3]))]
        return LinearBounds(parts[0], parts[1], parts[2], parts[3], tuple(input_shape),
                            reference)


def identity_rows(shape: tuple[int, ...], start: int, stop: int, like: Tensor) -> Tensor:
    """Rows start…stop−1 of the identity over a node of feature shape ``shape``:
    a Tensor (1, 1, 1, R, *shape) — one unit vector per bounded neuron."""
    xp = like.xp
    count = stop - start
    rows = xp.zeros((count, prod(shape)), dtype=like.dtype)
    rows[xp.arange(count), xp.arange(start, stop)] = 1
    return Tensor(rows.reshape((1, 1, 1, count, *shape)))


def _expand_neurons(tensor: Tensor, neuron_ndim: int) -> Tensor:
    """(P', B, *n) → (P', 1, B, 1, *n): broadcast over bound sides and rows."""
    return tensor.reshape((tensor.shape[0], 1, tensor.shape[1], 1) + tensor.shape[2:])


def _lower_slope(relaxation: ReluRelaxation, side: str, neuron_ndim: int) -> Tensor:
    if relaxation.row_lower_slopes is not None and side in relaxation.row_lower_slopes:
        slopes = relaxation.row_lower_slopes[side]  # (P', B, R, *n)
        return slopes.reshape((slopes.shape[0], 1) + slopes.shape[1:])
    return _expand_neurons(relaxation.lower_slope, neuron_ndim)


def _contract(coefficients: Tensor, vector: Tensor, neuron_ndim: int) -> Tensor:
    """Σ_n A[..., r, n] t[..., n] for A (P', S, B, R, *n) and t (P', 1, B, 1 or R, *n)."""
    if vector.shape[3] != 1:  # one vector per row (patches): no shared matrix product
        return (coefficients * vector).sum(axis=tuple(range(-neuron_ndim, 0)))
    matrix = coefficients.reshape(coefficients.shape[:coefficients.ndim - neuron_ndim] + (-1,))
    column = vector.reshape(vector.shape[:3] + (-1, 1))
    product = ops.matmul(matrix, column)
    return product.reshape(product.shape[:-1])


def relu_back_step(coefficients: Tensor, bias: Tensor | None, relaxation: ReluRelaxation,
                   sides: tuple[str, ...], neuron_ndim: int) -> tuple[Tensor, Tensor]:
    """One ReLU layer of back-substitution; returns the new (coefficients, bias).

    ``coefficients`` is (P', S, B', R, *n) with S = 1 (shared) or len(sides).
    """
    lower_slopes = {side: _lower_slope(relaxation, side, neuron_ndim) for side in sides}
    return relu_lines_back_step(coefficients, bias, lower_slopes,
                                _expand_neurons(relaxation.upper_slope, neuron_ndim),
                                _expand_neurons(relaxation.upper_intercept, neuron_ndim),
                                sides, neuron_ndim)


def relu_lines_back_step(coefficients: Tensor, bias: Tensor | None,
                         lower_slopes: Mapping[str, Tensor], upper_slope: Tensor,
                         intercept: Tensor, sides: tuple[str, ...], neuron_ndim: int
                         ) -> tuple[Tensor, Tensor]:
    """:func:`relu_back_step` with the lines of eq. (5) already laid out as
    (P', 1, B, 1 or R, *n): shared by every row, or one per row (patches mode).

    The slope each coefficient takes is picked by its sign in one pass (A ⊙ slope), and
    the intercept t meets only A⁻ (lower side) or A⁺ (upper side).
    """
    # per side: (slope for coefficients ≥ 0, slope for coefficients < 0)
    first, second, intercept_terms = [], [], []
    for position, side in enumerate(sides):
        lam = lower_slopes[side]
        own = min(position, coefficients.shape[1] - 1)
        own_coefficients = coefficients[:, own:own + 1]
        if side == "lower":
            first.append(lam)
            second.append(upper_slope)
            part = ops.negative_part(own_coefficients)
        else:
            first.append(upper_slope)
            second.append(lam)
            part = ops.positive_part(own_coefficients)
        intercept_terms.append(_contract(part, intercept, neuron_ndim))
    first_slope, second_slope = _stack_sides(first), _stack_sides(second)
    slope = ops.where(coefficients.data >= 0, first_slope, second_slope)
    new_coefficients = coefficients * slope
    new_bias = _stack_sides(intercept_terms)
    return new_coefficients, new_bias if bias is None else bias + new_bias


def _stack_sides(tensors: list[Tensor]) -> Tensor:
    """Concatenate per-side tensors along the side axis (1), broadcasting the others."""
    if len(tensors) == 1:
        return tensors[0]
    shape = _common(tensors)
    return ops.concatenate([ops.broadcast_to(t, shape) for t in tensors], axis=1)


def _common(tensors: list[Tensor]) -> tuple[int, ...]:
    """The broadcast shape of tensors that differ only by length-1 axes."""
    ndim = tensors[0].ndim
    return tuple(max(t.shape[axis] for t in tensors) for axis in range(ndim))


def back_substitute(network: Network, end: int, rows: Tensor, sides: tuple[str, ...],
                    relaxations: Mapping[int, ReluRelaxation], stop: int = -1) -> SymbolicBounds:
    """Linear bounds of ``rows · z_end`` in terms of z_stop (−1: the network input).

    ``rows`` is (P', 1, B', R, *shape of z_end); ``relaxations`` holds eq. (5) for every
    ReLU between ``stop`` and ``end``.
    """
    coefficients, bias, shared = rows, None, True
    for step in reversed(network.steps[stop + 1:end + 1]):
        if isinstance(step, ReluStep):
            if step.index not in relaxations:
                raise ValueError(f"no relaxation for the ReLU at layer {step.index}")
            coefficients, bias = relu_back_step(coefficients, bias, relaxations[step.index],
                                                sides, len(step.input_shape))
            shared = False
            continue
        term = step.bias_term(coefficients)
        if term is not None:
            bias = term if bias is None else bias + term
        coefficients = step.backward(coefficients)
    return SymbolicBounds(coefficients, bias, sides, shared)


def concretize_symbolic(symbolic: SymbolicBounds, box: Box,
                        feature_ndim: int) -> dict[str, Tensor]:
    """{side: constant bound (P', B, R)} over ``box`` (eq. 2), for a box of z_stop.

    ``box`` is (B, *x) or (P', B, *x).
    """
    center = flat_column(box.center, feature_ndim)
    radius = flat_column(box.radius, feature_ndim)
    if center.ndim == 4:  # (P', B, n, 1): insert the side axis
        center, radius = center.reshape(center.shape[:1] + (1,) + center.shape[1:]), \
            radius.reshape(radius.shape[:1] + (1,) + radius.shape[1:])
    coefficients = symbolic.coefficients
    lead = coefficients.shape[:coefficients.ndim - feature_ndim]
    matrix = coefficients.reshape((*lead, -1))
    value = ops.matmul(matrix, center)
    value = value.reshape(value.shape[:-1])
    if symbolic.bias is not None:
        value = value + symbolic.bias
    spread = ops.matmul(ops.abs(matrix), radius)
    spread = spread.reshape(spread.shape[:-1])
    out = {}
    for position, side in enumerate(symbolic.sides):
        index = 0 if symbolic.shared else position
        sign_spread = spread[:, index] if side == "upper" else -spread[:, index]
        out[side] = value[:, min(index, value.shape[1] - 1)] + sign_spread
    return out


__all__ = ["BOTH_SIDES", "SymbolicBounds", "back_substitute", "concretize_symbolic",
           "identity_rows", "relu_back_step", "relu_lines_back_step"]
