"""Fast paths of the back-substitution, fenced: each returns what the plain code in
:mod:`nobound.bounds.deeppoly` returns (tests compare them), or None where it does not apply
— arrays that are not NumPy floats of one dtype, small arrays, or no Numba; CuPy arrays
keep the plain path.

* :func:`fused_relu_back_step`: the ReLU step of eq. (4) as one compiled pass over the
  coefficients; on windows, λ, s, t are read from their maps at each row's window instead
  of being gathered first. With gradients recorded (training, alpha-CROWN's slope search)
  it is one differentiable op whose hand-written VJP is another compiled pass.
* :func:`fused_concretise`: eq. (2) on windows, reading the box's centre and radius maps
  at each row's window instead of gathering them; differentiable the same way.
* :func:`fused_transposed_conv`: A W for a convolution without the engine's im2col; rows
  numerous enough come back stored rows-innermost (:func:`rows_innermost`), a memory
  order the ReLU step and eq. (2) keep, on whole maps and on windows (module
  ``_rows_innermost_numba``); :func:`fused_conv_back_step` adds the convolution's bias
  term to those products.

Sums are added in another order than the plain path's matrix products and reductions, so
they may differ in the last bits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import Any

import numpy as np

from nobound.autodiff.ops._compiled import COMPILED_PASS_MIN_SIZE, numba_kernels
from nobound.autodiff.tensor import Tensor, is_grad_enabled
from nobound.bounds.patches import NeuronRows, WindowReluLines, WindowRows
from nobound.bounds.regions import Box
from nobound.bounds.rows import DenseRows, ReluLines

KERNELS = "nobound.bounds._back_substitution_numba"
ROWS_INNERMOST_KERNELS = "nobound.bounds._rows_innermost_numba"

#: Bytes of pixel-row products per block of :func:`fused_transposed_conv`: the block is
#: written by the matrix product and read back by the fold while it is still in the L2
#: cache.
PRODUCT_BLOCK_BYTES = 1 << 20
#: :func:`fused_transposed_conv` adds whole patch rows, kernel_w · C numbers, when they are
#: at least this long (a vector or more); shorter ones (a first layer: 5 · 1) by kernel
#: entry.
MIN_PATCH_ROW = 16
#: Short patch rows go through one (C·kh·kw × O)(O × pixels) product per map; with fewer
#: than this many output channels O those products are too small for BLAS to beat the
#: engine (cnn3's first layer, O = 8: 14.6 against 12.4 ms; cnn5's, O = 16: 23.4 against
#: 29.0 ms), which then stays.
MIN_MAP_PRODUCT_DEPTH = 16
#: Whole-map rows reaching a transposed convolution with at least this many rows per
#: member and side, all samples counted (B'·R), are stored rows-innermost from there on
#: (module ``_rows_innermost_numba``): the products' B'·R columns are then enough for BLAS.
MIN_ROWS_INNERMOST = 32
#: Rows-innermost, a transposed convolution onto fewer channels than this (a first layer's
#: 1 or 3) runs as one product per input pixel and a fold; with more, as one product per
#: output pixel and kernel row, no fold (``_rows_innermost_numba``).
MIN_ROWS_INNERMOST_PRODUCT_CHANNELS = 8

# vjp(G or None, g) → one gradient (or None) per input, for upstream G of A' and g of b'
StepVjp = Callable[[Any, Any], list[Any]]


def _rows_of(tensor: Tensor) -> np.ndarray:
    """(P', 1, B, R, *n) → (P', B, R, n), contiguous."""
    data = tensor.data
    return np.ascontiguousarray(data.reshape(data.shape[0], data.shape[2], data.shape[3], -1))


def _numpy_floats(tensors: Sequence[Tensor]) -> bool:
    """Whether these are NumPy float arrays of one dtype."""
    first = tensors[0].data
    return all(isinstance(t.data, np.ndarray) and t.data.dtype == first.dtype
               for t in tensors) and first.dtype.type in (np.float32, np.float64)


def _compiled_arrays(tensors: Sequence[Tensor]) -> bool:
    """Whether the compiled loops may take these: NumPy float arrays of one dtype, the
    first large enough to pay for a call."""
    return _numpy_floats(tensors) and tensors[0].data.size >= COMPILED_PASS_MIN_SIZE


def fused_relu_back_step(A: Tensor, a: Tensor | None, lines: ReluLines,  # noqa: N803
                         ndim: int) -> tuple[Tensor, Tensor] | None:
    """The compiled ReLU step of :func:`nobound.bounds.deeppoly.relu_back_step`, or None
    (another activation's lines, arrays the compiled loops do not take, or no Numba).

    Forward, for each row and side, coefficient by coefficient (A the side's coefficients;
    with S = 1 both sides read the same A):

        lower:  A'ₖ = Aₖ · (λₗ,ₖ if Aₖ ≥ 0 else sₖ),     b' = Σₖ min(Aₖ, 0) tₖ
        upper:  A'ₖ = Aₖ · (sₖ if Aₖ ≥ 0 else λᵤ,ₖ),     b' = Σₖ max(Aₖ, 0) tₖ

    and a ↦ a + b'. VJP: A' is linear in λ, s, t and, with the sign of each Aₖ fixed,
    linear in A; so for upstream gradients G = ∂L/∂A' and g = ∂L/∂b' of a row and side,

        ∂L/∂Aₖ  = Gₖ · (the slope chosen above) + g tₖ · 1[Aₖ < 0] (lower) or 1[Aₖ > 0] (upper)
        ∂L/∂λₗ,ₖ = Gₖ Aₖ 1[Aₖ ≥ 0]  (lower side only),   ∂L/∂λᵤ,ₖ = Gₖ Aₖ 1[Aₖ < 0]  (upper)
        ∂L/∂sₖ  = Gₖ Aₖ 1[Aₖ < 0] (lower) + Gₖ Aₖ 1[Aₖ ≥ 0] (upper)
        ∂L/∂tₖ  = g min(Aₖ, 0) (lower) + g max(Aₖ, 0) (upper),

    summed over both sides and over every axis an input is broadcast along (members,
    batch, rows; the sides when S = 1). At Aₖ = 0 these are the plain path's one-sided
    choices (the slope picked by Aₖ ≥ 0, the subgradient 0 of min/max at 0), so the
    gradients equal the plain path's, not only almost everywhere. On windows, the λ, s, t
    a row reads at window position (c, u, v) are its maps' entries at (c, i·S − Pad + u,
    j·S − Pad + v), 0 outside the image; their gradients are scatter-added back onto those
    entries, positions outside the image dropped — the adjoint of the zero-padded gather.
    """
    if isinstance(lines, WindowReluLines):
        step = _window_step(A, lines)
    else:
        step = _dense_step(A, lines)
    if step is None:
        return None
    coefficients, bias = step
    return coefficients, bias if a is None else a + bias


def _step_tensors(out: np.ndarray, bias: np.ndarray, inputs: Sequence[Tensor],
                  vjp: StepVjp) -> tuple[Tensor, Tensor]:
    """(A', b') as the two outputs of one op with the VJP ``vjp`` (for eq. 2: value and
    spread).

    The autodiff engine calls one VJP per Tensor, but this one wants G and g together (one
    pass over A). So A' is recorded as a child of b': A''s VJP, called first, keeps G and
    hands b' a zero gradient (which makes sure b''s VJP runs even if only A' was used);
    b''s VJP then computes every input's gradient at once.
    """
    if not (is_grad_enabled() and any(t.requires_grad for t in inputs)):
        return Tensor(out), Tensor(bias)
    kept: dict[str, Any] = {}

    def bias_vjp(grad_bias: Any) -> list[Any]:
        grad_out = kept.pop("out", None)
        if grad_out is None:  # A' unused downstream
            grad_out = np.zeros(out.shape, dtype=out.dtype)
        grad_out = np.ascontiguousarray(np.broadcast_to(grad_out, out.shape), dtype=out.dtype)
        grad_bias = np.ascontiguousarray(np.broadcast_to(grad_bias, bias.shape),
                                         dtype=bias.dtype)
        return vjp(grad_out, grad_bias)

    def out_vjp(grad_out: Any) -> tuple[Any]:
        kept["out"] = grad_out
        return (np.zeros(bias.shape, dtype=bias.dtype),)

    bias_tensor = Tensor.from_op(bias, inputs, bias_vjp)
    return Tensor.from_op(out, (bias_tensor,), out_vjp), bias_tensor


def _gradient_arrays(inputs: Sequence[Tensor], shapes: Sequence[tuple[int, ...]],
                     dtype: Any, out_shape: tuple[int, ...]
                     ) -> tuple[list[np.ndarray], np.ndarray, bool]:
    """Gradient arrays of ``shapes`` for the inputs that require one, one-row stand-ins
    (never written) for the others; the flags the kernels read; and whether the first
    input (the coefficients) spans the output's members and batch (axes 0 and 2), so the
    kernel writes its gradient once per entry and it need not be zeroed first."""
    wanted = np.array([t.requires_grad for t in inputs])
    assign = shapes[0][0] == out_shape[0] and shapes[0][2] == out_shape[2]
    arrays = [np.zeros(shape, dtype=dtype) if want and not (i == 0 and assign) else
              np.empty(shape if want else (1,) * (len(shape) - 1) + shape[-1:], dtype=dtype)
              for i, (want, shape) in enumerate(zip(wanted, shapes, strict=True))]
    return arrays, wanted, assign


#: (P', S, B', R, C, H, W) ↔ (P', S, H, W, C, B', R): the permutation is its own inverse
_INNERMOST_ORDER = (0, 1, 5, 6, 4, 2, 3)


def rows_innermost(data: Any) -> bool:
    """Whether coefficients (P', S, B', R, C, H, W) are stored (P', S, H, W, C, B', R) in
    memory: every neuron's numbers for all samples and rows contiguous
    (``_rows_innermost_numba``)."""
    return isinstance(data, np.ndarray) and data.ndim == 7 and \
        data.transpose(_INNERMOST_ORDER).flags.c_contiguous


def _innermost_blocks(data: np.ndarray) -> np.ndarray:
    """(P', S, B', R, C, H, W) → (P'·S, H, W·C, B'·R), C-contiguous: a view of
    rows-innermost coefficients, a copy of others."""
    stored = np.ascontiguousarray(data.transpose(_INNERMOST_ORDER))
    members, sides, height, width, channels, batch, rows = stored.shape
    return stored.reshape(members * sides, height, width * channels, batch * rows)


def _logical(stored: np.ndarray, lead: tuple[int, int, int, int],
             shape: tuple[int, int, int]) -> np.ndarray:
    """Rows-innermost blocks (P'·S, H, W·C, B'·R) as the logical (P', S, B', R, C, H, W)
    view, ``lead`` = (P', S, B', R)."""
    members, sides, batch, rows = lead
    channels, height, width = shape
    return stored.reshape(members, sides, height, width, channels, batch, rows).transpose(
        _INNERMOST_ORDER)


def _neuron_order(values: np.ndarray) -> np.ndarray:
    """Per-neuron maps (P, B, C, H, W) → (P, H·W·C, B): the rows-innermost neuron order,
    and each neuron's samples together, as the compiled loops read them (neuron by neuron,
    sample by sample)."""
    return np.ascontiguousarray(values.transpose(0, 3, 4, 2, 1)).reshape(
        values.shape[0], -1, values.shape[1])


def _rows_innermost_step(A: Tensor, inputs: Sequence[Tensor]  # noqa: N803
                         ) -> tuple[Tensor, Tensor] | None:
    """The ReLU step writing rows-innermost coefficients, from rows stored so or — copied
    into that order first — row by row (no gradients: rows are stored so only without)."""
    data = A.data
    if is_grad_enabled() and any(t.requires_grad for t in inputs):
        return None
    if any(t.shape[1] != 1 or t.shape[3] != 1 or t.shape[4:] != data.shape[4:]
           for t in inputs[1:]):
        return None  # per-row lines (alpha-CROWN): the plain path
    compiled = numba_kernels(ROWS_INNERMOST_KERNELS)
    if compiled is None:
        return None
    members_a, sides, batch_a, rows = data.shape[:4]
    channels, height, width = data.shape[4:]
    coefficients = _innermost_blocks(data).reshape(members_a, sides, -1, batch_a, rows)

    # λ, s, t (P', 1, B, 1, C, H, W) in the coefficients' neuron order
    lines = [_neuron_order(t.data.reshape(t.shape[0], t.shape[2], channels, height, width))
             for t in inputs[1:]]
    members = max([members_a] + [x.shape[0] for x in lines])
    batch = max([batch_a] + [x.shape[2] for x in lines])
    out = np.empty((members, 2, coefficients.shape[2], batch, rows), dtype=data.dtype)
    bias = np.empty((members, 2, batch, rows), dtype=data.dtype)
    compiled.relu_step_into(coefficients, *lines, out, bias)
    stored = out.reshape(members * 2, height, width * channels, batch * rows)
    return Tensor(_logical(stored, (members, 2, batch, rows), (channels, height, width))), \
        Tensor(bias)


def _steps_into_rows_innermost(A: Tensor, inputs: Sequence[Tensor]) -> bool:  # noqa: N803
    """Whether the ReLU step writes these maps' rows rows-innermost: stored so already, or
    row by row but numerous enough (B'·R ≥ MIN_ROWS_INNERMOST per member and side once the
    lines' batch is applied) that the next transposed convolution would store them so. The
    step then copies its input into that order — no larger than its output (one side, and
    often one row set shared by the batch) — so the output needs no copy."""
    data = A.data
    if rows_innermost(data):
        return True
    batch = max(t.shape[2] for t in inputs)
    return data.ndim == 7 and batch * data.shape[3] >= MIN_ROWS_INNERMOST


def _dense_step(A: Tensor, lines: ReluLines) -> tuple[Tensor, Tensor] | None:  # noqa: N803
    inputs = (A, lines.lower_slope["lower"], lines.lower_slope["upper"], lines.upper_slope,
              lines.intercept)
    if lines.lower_intercept is None and _compiled_arrays(inputs) and \
            _steps_into_rows_innermost(A, inputs) and \
            (step := _rows_innermost_step(A, inputs)) is not None:
        return step
    if lines.lower_intercept is not None or not _compiled_arrays(inputs):
        return None
    features, rows = A.shape[4:], A.shape[3]
    if A.shape[1] not in (1, 2) or any(t.shape[1] != 1 or t.shape[3] not in (1, rows) or
                                       t.shape[4:] != features for t in inputs[1:]):
        return None  # a layout the loops do not index (the plain path broadcasts it)
    kernels = numba_kernels(KERNELS)
    if kernels is None:
        return None
    data = A.data
    coefficients = np.ascontiguousarray(data.reshape(data.shape[:4] + (prod(features),)))
    line_rows = [_rows_of(t) for t in inputs[1:]]
    members = max([coefficients.shape[0]] + [x.shape[0] for x in line_rows])
    batch = max([coefficients.shape[2]] + [x.shape[1] for x in line_rows])
    out = np.empty((members, 2, batch, rows, coefficients.shape[4]), dtype=data.dtype)
    bias = np.empty((members, 2, batch, rows), dtype=data.dtype)
    kernels.relu_back_step_into(coefficients, *line_rows, out, bias)

    def vjp(grad_out: np.ndarray, grad_bias: np.ndarray) -> list[Any]:
        shapes = [coefficients.shape] + [x.shape for x in line_rows]
        grads, wanted, assign = _gradient_arrays(inputs, shapes, data.dtype, out.shape)
        kernels.relu_back_step_vjp_into(coefficients, *line_rows,
                                        grad_out.reshape(out.shape), grad_bias, *grads,
                                        wanted, assign)
        return [grad.reshape(t.shape) if want else None
                for grad, t, want in zip(grads, inputs, wanted, strict=True)]

    return _step_tensors(out.reshape(out.shape[:4] + features), bias, inputs, vjp)


def _window_step(A: Tensor, lines: WindowReluLines  # noqa: N803
                 ) -> tuple[Tensor, Tensor] | None:
    relaxation, neurons, window = lines.relaxation, lines.neurons, lines.window
    inputs = (A, relaxation.lower_slope, relaxation.upper_slope, relaxation.upper_intercept)
    if not _numpy_floats(inputs) or len({t.shape for t in inputs[1:]}) != 1 or \
            inputs[1].ndim != 5 or A.ndim != 7 or A.shape[1] not in (1, 2):
        return None
    if rows_innermost(A.data) and \
            (step := _rows_innermost_window_step(inputs, lines)) is not None:
        return step  # at any size: the layout stays
    if not _compiled_arrays(inputs):
        return None
    kernels = numba_kernels(KERNELS)
    if kernels is None:
        return None
    coefficients = np.ascontiguousarray(A.data)
    maps = [np.ascontiguousarray(t.data) for t in inputs[1:]]
    row, column = (np.ascontiguousarray(x) for x in (neurons.row, neurons.column))
    members = max(coefficients.shape[0], maps[0].shape[0], row.shape[0])
    batch = max(coefficients.shape[2], maps[0].shape[1], row.shape[1])
    out = np.empty((members, 2, batch) + coefficients.shape[3:], dtype=coefficients.dtype)
    bias = np.empty((members, 2, batch, coefficients.shape[3]), dtype=coefficients.dtype)
    kernels.window_relu_back_step_into(coefficients, *maps, row, column, window.stride,
                                       window.padding, out, bias)

    def vjp(grad_out: np.ndarray, grad_bias: np.ndarray) -> list[Any]:
        shapes = [coefficients.shape] + [m.shape for m in maps]
        grads, wanted, assign = _gradient_arrays(inputs, shapes, coefficients.dtype,
                                                 out.shape)
        kernels.window_relu_back_step_vjp_into(coefficients, *maps, row, column,
                                               window.stride, window.padding, grad_out,
                                               grad_bias, *grads, wanted, assign)
        return [grad if want else None for grad, want in zip(grads, wanted, strict=True)]

    return _step_tensors(out, bias, inputs, vjp)


def _rows_innermost_window_arrays(inputs: Sequence[Tensor], neurons: NeuronRows
                                  ) -> tuple[Any, list[np.ndarray]] | None:
    """For the rows-innermost window loops: the compiled module and [A as stored (P', S, K,
    K, C, B', R), the maps of ``inputs[1:]`` (P, B, C, H, W) as (P, C, H, W, B) — each
    neuron's samples together, as the loops read them — and the rows' ``row``,
    ``column``], C-contiguous; or None (gradients recorded, or no Numba). ``inputs[0]`` is
    A, stored rows-innermost; the caller has checked the arrays."""
    if is_grad_enabled() and any(t.requires_grad for t in inputs):
        return None
    compiled = numba_kernels(ROWS_INNERMOST_KERNELS)
    if compiled is None:
        return None
    stored = np.ascontiguousarray(inputs[0].data.transpose(_INNERMOST_ORDER))  # a view
    return compiled, [stored, *(np.ascontiguousarray(t.data.transpose(0, 2, 3, 4, 1))
                                for t in inputs[1:]),
                      *(np.ascontiguousarray(x) for x in (neurons.row, neurons.column))]


def _rows_innermost_window_step(inputs: Sequence[Tensor], lines: WindowReluLines
                                ) -> tuple[Tensor, Tensor] | None:
    """The ReLU step on window rows stored rows-innermost, writing rows-innermost ones;
    ``inputs`` = (A, λ, s, t), checked by the caller."""
    if (prepared := _rows_innermost_window_arrays(inputs, lines.neurons)) is None:
        return None
    compiled, arrays = prepared
    data, maps, row = inputs[0].data, arrays[1], arrays[4]
    members = max(data.shape[0], maps.shape[0], row.shape[0])
    batch = max(data.shape[2], maps.shape[4], row.shape[1])
    channels, height, width = data.shape[4:]
    out = np.empty((members, 2, height, width, channels, batch, data.shape[3]),
                   dtype=data.dtype)
    bias = np.empty((members, 2, batch, data.shape[3]), dtype=data.dtype)
    compiled.window_relu_step_into(*arrays, lines.window.stride, lines.window.padding, out,
                                   bias)
    return Tensor(out.transpose(_INNERMOST_ORDER)), Tensor(bias)


def _rows_innermost_window_concretise(A: WindowRows, a: Tensor | None,  # noqa: N803
                                      inputs: Sequence[Tensor]) -> dict[str, Tensor] | None:
    """Eq. (2) for window rows stored rows-innermost on the input, in one pass; ``inputs``
    = (A, centre, radius) with a population axis, checked by the caller."""
    if (prepared := _rows_innermost_window_arrays(inputs, A.neurons)) is None:
        return None
    compiled, arrays = prepared
    data, maps, row = A.A.data, arrays[1], arrays[3]
    shape = (max(data.shape[0], maps.shape[0], row.shape[0]), data.shape[1],
             max(data.shape[2], maps.shape[4], row.shape[1]), data.shape[3])
    value = np.empty(shape, dtype=data.dtype)
    spread = np.empty(shape, dtype=data.dtype)
    window = A.windows[0]
    compiled.window_concretise_into(*arrays, window.stride, window.padding, value, spread)
    return _sides_of(Tensor(value), Tensor(spread), a)


def fused_concretise(A: object, a: Tensor | None, box: Box) -> dict[str, Tensor] | None:  # noqa: N803
    """Eq. (2) for window rows as one compiled pass (dense rows stored rows-innermost: see
    :func:`_rows_innermost_concretise`), or None (other dense rows, or see below).

    value = Σₖ Aₖ cₖ and spread = Σₖ |Aₖ| rₖ, c and r the box's centre and radius at each
    row's window (0 outside the image). With gradients recorded it is one op whose VJP,
    for upstream gradients g_v, g_s of a row and side, is ∂L/∂Aₖ = g_v cₖ + g_s sign(Aₖ) rₖ
    (sign 0 at 0, as abs's VJP) and ∂L/∂cₖ = g_v Aₖ, ∂L/∂rₖ = g_s |Aₖ|, scatter-added back
    onto the maps like the ReLU step's λ, s, t.
    """
    if not isinstance(A, WindowRows):
        return _rows_innermost_concretise(A, a, box)
    center, radius = box.center, box.radius
    inputs = (A.A, center, radius)
    if not _numpy_floats(inputs) or center.shape != radius.shape or \
            center.ndim not in (4, 5) or A.A.ndim != 7:
        return None
    if rows_innermost(A.A.data):
        population = [t if t.ndim == 5 else Tensor(t.data[None]) for t in (center, radius)]
        if (sides := _rows_innermost_window_concretise(A, a, (A.A, *population))) is not None:
            return sides
    if not _compiled_arrays(inputs):
        return None
    kernels = numba_kernels(KERNELS)
    if kernels is None:
        return None
    coefficients = np.ascontiguousarray(A.A.data)
    maps = [np.ascontiguousarray(m.data) for m in (center, radius)]
    if center.ndim == 4:  # (B, C, H, W): no population axis
        maps = [m[None] for m in maps]
    row, column = (np.ascontiguousarray(x) for x in (A.neurons.row, A.neurons.column))
    window = A.windows[0]
    members = max(coefficients.shape[0], maps[0].shape[0], row.shape[0])
    batch = max(coefficients.shape[2], maps[0].shape[1], row.shape[1])
    shape = (members, coefficients.shape[1], batch, coefficients.shape[3])
    value = np.empty(shape, dtype=coefficients.dtype)
    spread = np.empty(shape, dtype=coefficients.dtype)
    kernels.window_concretise_into(coefficients, *maps, row, column, window.stride,
                                   window.padding, value, spread)

    def vjp(grad_value: np.ndarray, grad_spread: np.ndarray) -> list[Any]:
        shapes = [coefficients.shape] + [m.shape for m in maps]
        grads, wanted, _ = _gradient_arrays(inputs, shapes, coefficients.dtype, (0, 0, 0))
        kernels.window_concretise_vjp_into(coefficients, *maps, row, column, window.stride,
                                           window.padding, grad_value, grad_spread, *grads,
                                           wanted)
        return [grad.reshape(t.shape) if want else None
                for grad, t, want in zip(grads, inputs, wanted, strict=True)]

    return _sides_of(*_step_tensors(value, spread, inputs, vjp), a)


def _sides_of(value: Tensor, spread: Tensor, a: Tensor | None) -> dict[str, Tensor]:
    """Eq. (2) from its two sums (P', S, B, R): {"lower": value + a − spread, "upper":
    value + a + spread}, each side's own (S = 1: the sides coincide)."""
    total = value if a is None else value + a
    upper = spread.shape[1] - 1
    return {"lower": total[:, 0] - spread[:, 0],
            "upper": total[:, min(upper, total.shape[1] - 1)] + spread[:, upper]}


def _rows_innermost_concretise(A: object, a: Tensor | None, box: Box  # noqa: N803
                               ) -> dict[str, Tensor] | None:
    """Eq. (2) for whole-map rows stored rows-innermost on the input, in one pass; or None
    (another layout, gradients recorded, or no Numba)."""
    if not isinstance(A, DenseRows) or not rows_innermost(A.A.data):
        return None
    data = A.A.data
    center, radius = box.center, box.radius
    inputs = (A.A, center, radius)
    if not _compiled_arrays(inputs) or center.shape != radius.shape or \
            center.ndim not in (4, 5) or center.shape[-3:] != data.shape[-3:] or \
            (is_grad_enabled() and any(t.requires_grad for t in inputs)):
        return None
    compiled = numba_kernels(ROWS_INNERMOST_KERNELS)
    if compiled is None:
        return None
    members_a, sides, batch_a, rows = data.shape[:4]
    coefficients = _innermost_blocks(data).reshape(members_a, sides, -1, batch_a, rows)

    maps = [_neuron_order(m.data if center.ndim == 5 else m.data[None])
            for m in (center, radius)]
    shape = (max(members_a, maps[0].shape[0]), sides, max(batch_a, maps[0].shape[2]), rows)
    value = np.empty(shape, dtype=data.dtype)
    spread = np.empty(shape, dtype=data.dtype)
    compiled.concretise_into(coefficients, *maps, value, spread)
    return _sides_of(Tensor(value), Tensor(spread), a)


def goes_rows_innermost(coefficients: Tensor, weight: Tensor) -> bool:
    """Whether :func:`fused_transposed_conv` returns these rows (P', S, B', R, O, Ho, Wo)
    rows-innermost: stored so already, or B'·R ≥ MIN_ROWS_INNERMOST per member and side
    (NumPy floats, a shared weight, no gradient recorded, Numba present)."""
    data = coefficients.data
    return data.ndim == 7 and weight.ndim == 4 and \
        (rows_innermost(data) or data.shape[2] * data.shape[3] >= MIN_ROWS_INNERMOST) and \
        _numpy_floats((coefficients, weight)) and \
        not (is_grad_enabled() and (coefficients.requires_grad or weight.requires_grad)) and \
        numba_kernels(ROWS_INNERMOST_KERNELS) is not None


def _rows_innermost_conv(coefficients: Tensor, weight: Tensor,
                         in_shape: tuple[int, int, int], stride: int, padding: int,
                         bias: Tensor | None = None) -> tuple[Tensor, Tensor | None] | None:
    """(A W, A b or None without ``bias``), A W rows-innermost, for rows that
    :func:`goes_rows_innermost` sends there (on whole maps or on windows); or None."""
    if not goes_rows_innermost(coefficients, weight):
        return None
    compiled = numba_kernels(ROWS_INNERMOST_KERNELS)
    data = coefficients.data
    maps = _innermost_blocks(data)
    out = np.empty((maps.shape[0], in_shape[1], in_shape[2] * in_shape[0], maps.shape[-1]),
                   dtype=data.dtype)
    if bias is None:
        bias_values, term = np.empty(0, dtype=data.dtype), np.empty((1, 0), dtype=data.dtype)
    else:
        bias_values = np.ascontiguousarray(bias.data.reshape(-1), dtype=data.dtype)
        term = np.empty((maps.shape[0], maps.shape[-1]), dtype=data.dtype)
    if in_shape[0] < MIN_ROWS_INNERMOST_PRODUCT_CHANNELS:
        compiled.transposed_conv_fold_into(maps, weight.data, stride, padding, out,
                                           bias_values, term)
    else:
        compiled.transposed_conv_into(maps, compiled.tap_runs(weight.data, stride),
                                      weight.shape[0], stride, padding, out, bias_values, term)
    return Tensor(_logical(out, data.shape[:4], in_shape)), \
        None if bias is None else Tensor(term.reshape(data.shape[:4]))


def fused_conv_back_step(coefficients: Tensor, weight: Tensor, bias: Tensor | None,
                         in_shape: tuple[int, int, int], stride: int, padding: int
                         ) -> tuple[Tensor, Tensor | None] | None:
    """(A W, A b) of a convolution — A b None without a bias, a shared bias (1, O) else —
    from one compiled pass, for rows :func:`goes_rows_innermost` sends there; or None (then
    the step's transposed convolution and its own bias term apply).

    The bias term A b = Σ_(c, h, w) A[c, h, w] b_c is summed while the products read each
    block of A, so it costs no pass of its own over the coefficients."""
    if bias is not None and (bias.shape[0] != 1 or not _numpy_floats((coefficients, bias)) or
                             (is_grad_enabled() and bias.requires_grad)):
        return None
    return _rows_innermost_conv(coefficients, weight, in_shape, stride, padding, bias)


def fused_transposed_conv(coefficients: Tensor, weight: Tensor,
                          in_shape: tuple[int, int, int], stride: int, padding: int
                          ) -> Tensor | None:
    """The transposed convolution of rows (…, O, Ho, Wo) → (…, *in_shape) for a shared
    (O, C, kh, kw) weight, as ``ops.conv_transpose2d`` computes it; or None (a population
    weight, short patch rows with O < MIN_MAP_PRODUCT_DEPTH, gradients recorded, arrays the
    compiled loops do not take, or no Numba).

    Rows (P', S, B', R, O, Ho, Wo) — on whole maps or on windows — that are stored
    rows-innermost, or number B'·R ≥ MIN_ROWS_INNERMOST per member and side, come back
    rows-innermost (:func:`rows_innermost`), by ``_rows_innermost_numba``'s products without
    a fold; the ReLU step and eq. (2) keep that layout (on windows too), the other steps
    take any.

    Otherwise both compute, per map, x = col2im(Wᵀ y): every input pixel's O values times W
    give that pixel's C·kh·kw contributions, scatter-added onto the output, block of maps by
    block of maps. Where a patch row (kw · C numbers) is at least MIN_PATCH_ROW long, the
    product runs as (pixels × O)(O × kh·kw·C) — the orientation OpenBLAS runs about twice
    as fast for these thin shapes as the engine's (C·kh·kw × O)(O × pixels) — and
    ``fold_pixel_rows_into`` adds whole patch rows; otherwise (few channels, as in a first
    layer) each map is one product in the engine's orientation, (C·kh·kw × O)(O × pixels),
    and ``fold_kernel_rows_into`` adds runs of a kernel entry's contributions onto the
    output split by column phase, where the engine's col2im writes every stride-th number.
    """
    if (innermost := _rows_innermost_conv(coefficients, weight, in_shape, stride,
                                          padding)) is not None:
        return innermost[0]
    if weight.ndim != 4 or (is_grad_enabled() and (coefficients.requires_grad or
                                                   weight.requires_grad)):
        return None
    if not _compiled_arrays((coefficients, weight)):
        return None
    data = coefficients.data
    kernels = numba_kernels(KERNELS)
    if kernels is None:
        return None
    out_channels, channels, kernel_h, kernel_w = weight.shape
    in_h, in_w = data.shape[-2:]
    height, width = in_shape[1:]
    lead, pixels = data.shape[:-3], in_h * in_w
    count = prod(lead)
    maps = data.reshape(count, out_channels, pixels)
    dtype = data.dtype
    out = np.empty((count, channels, height, width), dtype=dtype)
    padded_h = max((in_h - 1) * stride + kernel_h, padding + height)
    columns = kernel_h * kernel_w * channels
    pixel_rows = kernel_w * channels >= MIN_PATCH_ROW
    if not pixel_rows and out_channels < MIN_MAP_PRODUCT_DEPTH:
        return None
    if pixel_rows:
        # W's columns in the fold's order (p, q, c): a patch row is kw · C contiguous numbers
        w_matrix = np.ascontiguousarray(weight.data.transpose(0, 2, 3, 1).reshape(
            out_channels, columns))
        scratch = np.empty((padded_h, max((in_w - 1) * stride + kernel_w, padding + width),
                            channels), dtype=dtype)
    else:
        w_matrix = np.ascontiguousarray(weight.data.reshape(out_channels, columns).T)
        phase_width = max(in_w + (kernel_w - 1) // stride, (padding + width - 1) // stride + 1)
        scratch = np.empty((channels, padded_h, stride, phase_width), dtype=dtype)
    per_block = max(1, min(count, PRODUCT_BLOCK_BYTES // (pixels * columns * dtype.itemsize)))
    channel_major = np.empty(out_channels * per_block * pixels if pixel_rows else 0,
                             dtype=dtype)
    products = np.empty(per_block * pixels * columns, dtype=dtype)
    for start in range(0, count, per_block):
        stop = min(count, start + per_block)
        size = (stop - start) * pixels
        if pixel_rows:
            block = channel_major[:out_channels * size].reshape(out_channels, stop - start,
                                                                pixels)
            np.copyto(block, maps[start:stop].transpose(1, 0, 2))  # runs of channel pixels
            # (pixels × O) as the transposed view of the (O × pixels) block: no copy
            product = np.matmul(block.reshape(out_channels, size).T, w_matrix,
                                out=products[:size * columns].reshape(size, columns))
            kernels.fold_pixel_rows_into(product, in_h, in_w, kernel_h, kernel_w, stride,
                                         padding, scratch, out, start)
        else:
            # one (C·kh·kw × O)(O × pixels) product per map: no copy of the maps
            product = np.matmul(w_matrix, maps[start:stop], out=products[
                :size * columns].reshape(stop - start, columns, pixels))
            kernels.fold_kernel_rows_into(product, in_h, in_w, kernel_h, kernel_w, stride,
                                          padding, scratch, out, start)
    return Tensor(out.reshape(*lead, channels, height, width))


def rows_innermost_product(A: Tensor, factor: Any) -> Tensor | None:  # noqa: N803
    """A ⊙ ``factor`` (a NumPy array broadcast against A) for rows stored rows-innermost,
    stored rows-innermost too — NumPy's own product picks a memory order from both operands
    and, with a factor over rows and window positions (the window mask), leaves the layout —
    or None (another layout, or gradients recorded)."""
    if not rows_innermost(A.data) or (is_grad_enabled() and A.requires_grad):
        return None
    stored = A.data.transpose(_INNERMOST_ORDER)  # C-contiguous: the memory order
    factor = np.broadcast_to(factor, np.broadcast_shapes(factor.shape, (1,) * A.ndim))
    # both operands in the memory order: one streaming loop, the factor broadcast along C
    out = np.multiply(stored, np.ascontiguousarray(factor.transpose(_INNERMOST_ORDER)))
    return Tensor(out.transpose(_INNERMOST_ORDER))
