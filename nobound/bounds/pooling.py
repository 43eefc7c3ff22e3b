"""Max pooling as the relaxations see it.

For one window with inputs v_1 … v_n bounded by [l_i, u_i] and y = max_i v_i:

* **IBP**: [max_i l_i, max_i u_i] (max is monotone in every argument).
* **DeepPoly's max relaxation** (Singh et al., 2019), used by DeepPoly, CROWN-IBP and
  alpha-CROWN (which keeps it fixed): with j* the input of largest lower bound,

  - if l_{j*} ≥ u_i for every other i, the window is *decided*: y = v_{j*} exactly;
  - otherwise v_{j*} ≤ y ≤ max_i u_i (y is at least any of its inputs, at most the
    largest upper bound).

Back-substitution (eq. 4) of coefficients A on the outputs: on the lower side a
coefficient A ≥ 0 takes the lower bound of y (the variable v_{j*}), A < 0 its upper bound
(the constant max u, or v_{j*} when decided); the upper side mirrors it. A variable's
coefficient goes to the input position of its window's j*, added (windows may overlap);
a constant's goes to the bias. The choices (j*, decided, max u) are fixed by the bounds;
the map of the coefficients is built from differentiable operations (alpha-CROWN's slopes
of later ReLUs, and certified training, take gradients through it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.bounds.rows import DenseRows
from nobound.bounds.steps import Step
from nobound.nn.pooling import MaxPool2d, window_slices


@dataclass
class MaxPoolRelaxation:
    """Per output neuron (P', B, C, Ho, Wo): the window offset of j*, whether the window
    is decided, and the constant upper bound max u (see the module doc)."""

    layer: MaxPool2d
    input_shape: tuple[int, ...]      # (C, H, W)
    winner: Any                       # offset number a·k + b of j* in its window
    decided: Any                      # bool
    upper_constant: Any               # max_i u_i

    def rows(self, start: int, stop: int) -> MaxPoolRelaxation:
        return self

    def back_substitute(self, A: Any, a: Tensor | None) -> tuple[DenseRows, Tensor | None]:  # noqa: N803
        if not isinstance(A, DenseRows):
            raise ValueError("max pooling is back-substituted on dense rows only")
        coefficients = A.A                                     # (P', S, B', R, C, Ho, Wo)
        grow = (slice(None), None, slice(None), None)          # (P', B, …) → (P', 1, B, 1, …)
        winner = self.winner[grow]
        decided = self.decided[grow]
        constant = Tensor(self.upper_constant[grow])
        pad = self.layer.padding
        c, h, w = self.input_shape
        slices = window_slices(self.layer.kernel_size, self.layer.stride, h + 2 * pad,
                               w + 2 * pad)
        sides, biases = [], []
        for side in range(2):
            side_A = coefficients[:, min(side, coefficients.shape[1] - 1):][:, :1]  # noqa: N806
            # side 0 bounds from below: A ≥ 0 takes the lower line (the variable)
            takes_variable = ((side_A.data >= 0) if side == 0 else (side_A.data < 0)) | decided
            variable = ops.where(takes_variable, side_A, 0.0)
            biases.append(ops.sum(ops.where(takes_variable, 0.0, side_A * constant),
                                  axis=(-3, -2, -1)))
            placed = None
            for offset, (rows, cols) in enumerate(slices):
                part = _place(ops.where(winner == offset, variable, 0.0), rows.start,
                              cols.start, self.layer.stride, h + 2 * pad, w + 2 * pad)
                placed = part if placed is None else placed + part
            sides.append(placed)
        result = ops.concatenate(sides, axis=1)
        if pad:
            result = result[..., pad:pad + h, pad:pad + w]
        bias = ops.concatenate(biases, axis=1)
        return DenseRows(result), bias if a is None else a + bias


def _dilate_last_axis(values: Tensor, stride: int) -> Tensor:
    """(…, n) → (…, stride·(n − 1) + 1) with stride − 1 zeros between neighbours."""
    n = values.shape[-1]
    zeros = Tensor(values.xp.zeros(values.shape + (stride - 1,), dtype=values.dtype))
    joined = ops.concatenate([values.reshape(values.shape + (1,)), zeros], axis=-1)
    return joined.reshape(values.shape[:-1] + (n * stride,))[..., :stride * (n - 1) + 1]


def _place(values: Tensor, top: int, left: int, stride: int, height: int, width: int
           ) -> Tensor:
    """The (height, width) grid that holds ``values`` (…, Ho, Wo) at rows top + stride·i,
    columns left + stride·j and zeros elsewhere — the adjoint of the strided slice — built
    from differentiable reshapes, concatenations and padding."""
    if stride > 1:
        values = _dilate_last_axis(values, stride)
        values = ops.swapaxes(_dilate_last_axis(ops.swapaxes(values, -1, -2), stride), -1, -2)
    rows, cols = values.shape[-2:]
    widths = [(0, 0)] * (values.ndim - 2) + [(top, height - top - rows),
                                             (left, width - left - cols)]
    return ops.pad(values, widths)


class MaxPoolStep(Step):
    """y = max over each window (:class:`~nobound.nn.pooling.MaxPool2d`)."""

    activation = True

    def __init__(self, index: int, layer: MaxPool2d, shape: tuple[int, ...]) -> None:
        if len(shape) != 3:
            raise ValueError(f"layer {index}: MaxPool2d expects (C, H, W), got {shape}")
        super().__init__(index, shape, layer.output_shape(shape))
        self.layer = layer

    def interval(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        return self.layer(lower), self.layer(upper)

    def relax(self, l: Tensor, u: Tensor) -> MaxPoolRelaxation:  # noqa: E741 - the paper's l
        xp = l.xp
        lower, upper = self.layer.padded(l.data), self.layer.padded(u.data)
        slices = window_slices(self.layer.kernel_size, self.layer.stride, *lower.shape[-2:])
        best = lower[(..., *slices[0])]
        winner = xp.zeros(best.shape, dtype=xp.int64)
        for offset, (rows, cols) in enumerate(slices[1:], start=1):
            better = lower[..., rows, cols] > best
            best = xp.where(better, lower[..., rows, cols], best)
            winner = xp.where(better, offset, winner)
        # the largest upper bound among the *other* inputs decides whether j* always wins
        others = xp.full(best.shape, -xp.inf, dtype=best.dtype)
        largest = xp.full(best.shape, -xp.inf, dtype=best.dtype)
        for offset, (rows, cols) in enumerate(slices):
            window_upper = upper[..., rows, cols]
            largest = xp.maximum(largest, window_upper)
            others = xp.where(winner == offset, others, xp.maximum(others, window_upper))
        return MaxPoolRelaxation(self.layer, self.input_shape, winner, best >= others, largest)
