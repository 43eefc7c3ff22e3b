"""Fast paths of the back-substitution, fenced: each returns what the plain code in
:mod:`nobound.bounds.deeppoly` returns (tests compare them), or None where it does not apply
— NumPy float arrays through which no gradient is recorded (certification, benchmarks,
alpha-CROWN's slope search), Numba present.

* :func:`fused_relu_back_step`: the ReLU step of eq. (4) as one compiled pass over the
  coefficients; on windows, λ, s, t are read from their maps at each row's window instead
  of being gathered first.
* :func:`fused_concretise`: eq. (2) on windows, reading the box's centre and radius maps
  at each row's window instead of gathering them.

Sums are added in another order than the plain path's matrix products and reductions, so
they may differ in the last bits.
"""

from __future__ import annotations

from math import prod

import numpy as np

from nobound.autodiff.ops._compiled import COMPILED_PASS_MIN_SIZE, numba_kernels
from nobound.autodiff.tensor import Tensor
from nobound.bounds.patches import WindowReluLines, WindowRows
from nobound.bounds.regions import Box
from nobound.bounds.rows import ReluLines

KERNELS = "nobound.bounds._back_substitution_numba"


def _rows_of(tensor: Tensor, ndim: int) -> np.ndarray:
    """(P', 1, B, R, *n) → (P', B, R, n), contiguous."""
    data = tensor.data
    return np.ascontiguousarray(data.reshape(data.shape[0], data.shape[2], data.shape[3], -1))


def fused_relu_back_step(A: Tensor, a: Tensor | None, lines: ReluLines,  # noqa: N803
                         ndim: int) -> tuple[Tensor, Tensor] | None:
    """The compiled ReLU step, or None (gradients recorded, another activation's lines,
    arrays that are not NumPy floats, small arrays, or no Numba)."""
    if isinstance(lines, WindowReluLines):
        return _fused_window_relu_back_step(A, a, lines)
    parts = (A, lines.lower_slope["lower"], lines.lower_slope["upper"], lines.upper_slope,
             lines.intercept)
    if lines.lower_intercept is not None or any(t.requires_grad for t in parts) or \
            (a is not None and a.requires_grad):
        return None
    data = A.data
    if not isinstance(data, np.ndarray) or data.dtype.type not in (np.float32, np.float64) \
            or data.size < COMPILED_PASS_MIN_SIZE or \
            any(t.data.dtype != data.dtype or not isinstance(t.data, np.ndarray)
                for t in parts[1:]):
        return None
    kernels = numba_kernels(KERNELS)
    if kernels is None:
        return None
    features = data.shape[4:]
    coefficients = np.ascontiguousarray(data.reshape(data.shape[:4] + (prod(features),)))
    lines_rows = [_rows_of(t, ndim) for t in parts[1:]]
    members = max([coefficients.shape[0]] + [x.shape[0] for x in lines_rows])
    batch = max([coefficients.shape[2]] + [x.shape[1] for x in lines_rows])
    rows = coefficients.shape[3]
    out = np.empty((members, 2, batch, rows, coefficients.shape[4]), dtype=data.dtype)
    bias = np.empty((members, 2, batch, rows), dtype=data.dtype)
    kernels.relu_back_step_into(coefficients, *lines_rows, out, bias)
    new_bias = Tensor(bias)
    return Tensor(out.reshape(out.shape[:4] + features)), \
        new_bias if a is None else a + new_bias


def _compiled_inputs(tensors: list[Tensor]) -> bool:
    """Whether the compiled loops may take these: NumPy float arrays of one dtype, no
    gradient recorded, the first large enough to pay for a call."""
    first = tensors[0].data
    return all(isinstance(t.data, np.ndarray) and not t.requires_grad and
               t.data.dtype == first.dtype for t in tensors) and \
        first.dtype.type in (np.float32, np.float64) and first.size >= COMPILED_PASS_MIN_SIZE


def _fused_window_relu_back_step(A: Tensor, a: Tensor | None, lines: WindowReluLines  # noqa: N803
                                 ) -> tuple[Tensor, Tensor] | None:
    relaxation, neurons, window = lines.relaxation, lines.neurons, lines.window
    maps = [relaxation.lower_slope, relaxation.upper_slope, relaxation.upper_intercept]
    if not _compiled_inputs([A, *maps]) or (a is not None and a.requires_grad):
        return None
    kernels = numba_kernels(KERNELS)
    if kernels is None:
        return None
    coefficients = np.ascontiguousarray(A.data)
    lam, slope, intercept = (np.ascontiguousarray(m.data) for m in maps)
    row, column = (np.ascontiguousarray(x) for x in (neurons.row, neurons.column))
    members = max(coefficients.shape[0], lam.shape[0], row.shape[0])
    batch = max(coefficients.shape[2], lam.shape[1], row.shape[1])
    out = np.empty((members, 2, batch) + coefficients.shape[3:], dtype=coefficients.dtype)
    bias = np.empty((members, 2, batch, coefficients.shape[3]), dtype=coefficients.dtype)
    kernels.window_relu_back_step_into(coefficients, lam, slope, intercept, row, column,
                                       window.stride, window.padding, out, bias)
    new_bias = Tensor(bias)
    return Tensor(out), new_bias if a is None else a + new_bias


def fused_concretise(A: object, a: Tensor | None, box: Box) -> dict[str, Tensor] | None:  # noqa: N803
    """Eq. (2) for window rows as one compiled pass, or None (dense rows, or see above)."""
    if not isinstance(A, WindowRows):
        return None
    center, radius = box.center, box.radius
    if not _compiled_inputs([A.A, center, radius]) or (a is not None and a.requires_grad):
        return None
    kernels = numba_kernels(KERNELS)
    if kernels is None:
        return None
    coefficients = np.ascontiguousarray(A.A.data)
    center, radius = (np.ascontiguousarray(m.data) for m in (center, radius))
    if center.ndim == 4:  # (B, C, H, W): no population axis
        center, radius = center[None], radius[None]
    row, column = (np.ascontiguousarray(x) for x in (A.neurons.row, A.neurons.column))
    window = A.windows[0]
    members = max(coefficients.shape[0], center.shape[0], row.shape[0])
    batch = max(coefficients.shape[2], center.shape[1], row.shape[1])
    shape = (members, coefficients.shape[1], batch, coefficients.shape[3])
    value = np.empty(shape, dtype=coefficients.dtype)
    spread = np.empty(shape, dtype=coefficients.dtype)
    kernels.window_concretise_into(coefficients, center, radius, row, column, window.stride,
                                   window.padding, value, spread)
    total = Tensor(value) if a is None else Tensor(value) + a
    upper = spread.shape[1] - 1
    return {"lower": total[:, 0] - Tensor(spread[:, 0]),
            "upper": total[:, min(upper, total.shape[1] - 1)] + Tensor(spread[:, upper])}
