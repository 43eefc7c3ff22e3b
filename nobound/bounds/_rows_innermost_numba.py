"""Compiled loops (Numba, with BLAS) for back-substitution rows stored rows-innermost.

Coefficients A of logical shape (P', S, B', R, C, H, W) are usually stored row by row: each
row's C·H·W numbers together. A transposed convolution of such rows is a matrix product
per block of rows followed by a scatter-add (col2im) of kh·kw/stride² times the output's
size, the fold, which costs about as much as the product. Stored *rows-innermost* — in
memory (P', S, H, W, C, B', R), the same logical array — every neuron's B'·R numbers (its
coefficient in every row of every sample) are contiguous, and the transposed convolution,
which is the same for every sample and row, needs no fold:

    out[y, x, :, :] += W_run (C × n·O) · A[oy, ox₀ … ox₀+n−1, :, :] (n·O × B'·R)

for each output pixel (y, x) and kernel row ky reaching it: the taps kx of that kernel row
that reach column x read n consecutive input columns, whose n·O channels are contiguous in
this layout, and W_run is those taps' weights side by side (:func:`tap_runs`). One BLAS
product per (y, ky, x) and block of columns, accumulated straight into the output. The
ReLU step (:func:`relu_step_into`) is then a loop over neurons and samples with λ, s, t
fixed and R contiguous numbers to scale, and the bias term of a convolution a
vector-matrix product (in :mod:`nobound.bounds.kernels`).

Rows on receptive-field windows (:mod:`nobound.bounds.patches`, logical (P', S, B', R, C,
K, K)) are stored the same way, (P', S, K, K, C, B', R): the "full" transposed convolution
of a window is the same product loop with padding 0. A window row's λ, s, t depend on its
position, so the window loops (:func:`window_relu_step_into`,
:func:`window_concretise_into`) walk each sample's rows in runs at one position
(:func:`position_runs`; the rows come sorted by position), one entry per run.

The arithmetic is that of :func:`nobound.bounds.deeppoly.relu_back_step` and of
``ops.conv_transpose2d``, each sum in another order. Importing this module raises
``ImportError`` without Numba; it registers the BLAS routines it calls (SciPy's) under
``nobound_``-prefixed names with LLVM, so that the compiled loops can be cached on disk.
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.extending import get_cython_function_address

for _name in ("sgemm", "dgemm"):
    llvm.add_symbol(f"nobound_{_name}",
                    get_cython_function_address("scipy.linalg.cython_blas", _name))
_GEMM_SIGNATURE = types.void(*([types.voidptr] * 13))  # Fortran: every argument by address
_sgemm = types.ExternalFunction("nobound_sgemm", _GEMM_SIGNATURE)
_dgemm = types.ExternalFunction("nobound_dgemm", _GEMM_SIGNATURE)

#: Columns (samples × rows) a transposed convolution takes at a time: an output row of
#: Wo·C neurons stays in the L2 cache between the kernel rows that reach it.
COLUMN_BLOCK = 512
#: Columns :func:`transposed_conv_fold_into` takes at a time: its products have only O
#: (a first layer's 16) terms each, so wider ones pay BLAS's per-call cost less often.
FOLD_COLUMN_BLOCK = 1024


@njit(inline="always", nogil=True)
def _gemm(transposes: Any, sizes: Any, alpha: Any, a: Any, b: Any, beta: Any,
          c: Any) -> None:
    """Column-major BLAS ``c = α a b + β c`` with the two ``transposes`` flags (uint8), (m,
    n, k, lda, ldb, ldc) = ``sizes`` (int32) and α, β one-element arrays (every argument
    by address, as Fortran takes them): s/dgemm by the arrays' precision."""
    if a.itemsize == 4:
        _sgemm(transposes[0:].ctypes, transposes[1:].ctypes, sizes[0:].ctypes,
               sizes[1:].ctypes, sizes[2:].ctypes, alpha.ctypes, a.ctypes, sizes[3:].ctypes,
               b.ctypes, sizes[4:].ctypes, beta.ctypes, c.ctypes, sizes[5:].ctypes)
    else:
        _dgemm(transposes[0:].ctypes, transposes[1:].ctypes, sizes[0:].ctypes,
               sizes[1:].ctypes, sizes[2:].ctypes, alpha.ctypes, a.ctypes, sizes[3:].ctypes,
               b.ctypes, sizes[4:].ctypes, beta.ctypes, c.ctypes, sizes[5:].ctypes)


@njit(cache=True, boundscheck=False, nogil=True)
def tap_runs(weight: Any, stride: int) -> Any:
    """runs[ky, kx, c, m·O + o] = weight[o, c, ky, kx − m·stride] (0 where kx − m·stride <
    0): for each kernel entry, the weights of it and the taps stride, 2·stride, … to its
    left, which read the next input columns; (kh, kw, C, n·O), n = ⌈kw / stride⌉."""
    out_channels, channels, kernel_h, kernel_w = weight.shape
    taps = (kernel_w + stride - 1) // stride
    runs = np.zeros((kernel_h, kernel_w, channels, taps * out_channels), weight.dtype)
    for ky in range(kernel_h):
        for kx in range(kernel_w):
            for m in range(taps):
                k = kx - m * stride
                if k < 0:
                    break
                for c in range(channels):
                    for o in range(out_channels):
                        runs[ky, kx, c, m * out_channels + o] = weight[o, c, ky, k]
    return runs


@njit(cache=True, boundscheck=False, nogil=True)
def transposed_conv_into(maps: Any, runs: Any, out_channels: int, stride: int, padding: int,
                         out: Any, bias: Any, bias_term: Any) -> None:
    """out = the transposed convolution of ``maps`` for the weight whose :func:`tap_runs`
    are ``runs``: maps (blocks, Hi, Wi·O, N) → out (blocks, Ho, Wo·C, N), both
    rows-innermost and C-contiguous (pixel-major, channels, then the N = B'·R columns);
    with a ``bias`` (O,) (length 0: none), also the bias term bias_term (blocks, N) = Σ over
    the maps' neurons of A · b (:func:`add_bias_term`).

    An input pixel (oy, ox) reaches output (y, x) through the kernel entry (ky, kx) with
    y = oy·stride − padding + ky and x likewise. For output column x the entries of a
    kernel row that reach it are kx ≡ x + padding (mod stride), from the largest one at or
    below min(kw − 1, x + padding) (the smallest ox) down, while ox stays below Wi: a run
    of consecutive input columns, one product.
    """
    blocks, in_h, in_wo, columns = maps.shape
    kernel_h, kernel_w, channels, run_width = runs.shape
    out_h = out.shape[1]
    out_w = out.shape[2] // channels
    in_w = in_wo // out_channels
    transposes = np.array([78, 78], np.uint8)  # "N", "N"
    scalars = np.array([1, 0], maps.dtype)  # α = 1; β = 0 (first product), then 1
    # m n k lda ldb ldc; the columns a block of COLUMN_BLOCK at a time (its output rows
    # stay in cache between the kernel rows that reach them)
    sizes = np.array([0, channels, 0, columns, run_width, columns], np.int32)
    zero = out.dtype.type(0)
    with_bias = bias.size > 0
    for block in range(blocks):
        if with_bias:
            bias_term[block] = zero
        for first_column in range(0, columns, COLUMN_BLOCK):
            width = min(COLUMN_BLOCK, columns - first_column)
            sizes[0] = width
            totals = bias_term[block, first_column:first_column + width] if with_bias \
                else bias_term[0, :0]
            summed = 0  # the input rows oy < summed are in the bias term of this block
            for y in range(out_h):
                target_row = out[block, y, :, first_column:first_column + width]
                first = True  # no product has reached this output row yet
                for ky in range(min(kernel_h - 1, y + padding), -1, -1):  # oy ascending
                    if (y + padding - ky) % stride != 0:
                        continue
                    oy = (y + padding - ky) // stride
                    if oy >= in_h:
                        break
                    source_row = maps[block, oy, :, first_column:first_column + width]
                    while with_bias and summed <= oy:  # first read: the rows are in cache
                        add_bias_term(maps, block, summed, 0, in_wo, first_column, bias,
                                      totals)
                        summed += 1
                    for x in range(out_w):
                        phase = (x + padding) % stride
                        top = min(kernel_w - 1, x + padding)
                        kx = phase + ((top - phase) // stride) * stride  # the largest entry
                        ox = (x + padding - kx) // stride
                        target = target_row[x * channels:(x + 1) * channels]
                        if top < phase or ox >= in_w:  # no entry of this kernel row reaches x
                            if first:
                                target[:] = zero
                            continue
                        sizes[2] = (min(kx // stride + 1, in_w - ox)) * out_channels
                        source = source_row[ox * out_channels:]
                        run = runs[ky, kx]
                        beta = scalars[1:] if first else scalars[0:]
                        # column-major BLAS: outᵀ (R × C) = sourceᵀ (R × k) · runᵀ (k × C) + β outᵀ
                        _gemm(transposes, sizes, scalars, source, run, beta, target)
                    first = False
                if first:  # no kernel row reaches output row y
                    target_row[:] = zero
            while with_bias and summed < in_h:  # input rows no output row reads
                add_bias_term(maps, block, summed, 0, in_wo, first_column, bias, totals)
                summed += 1


@njit(inline="always", nogil=True, boundscheck=False)
def add_bias_term(maps: Any, block: int, oy: int, first: int, stop: int, first_column: int,
                  bias: Any, totals: Any) -> None:
    """totals += Σ_k b_(k mod O) maps[block, oy, k, first_column:] over k = first … stop − 1
    (neurons x·O + o of input row oy): a convolution's bias term A b = Σ_(c, h, w) A[c, h,
    w] b_c, a few neurons at a time (each column's sum in another order than a matrix
    product's)."""
    out_channels = bias.size
    width = totals.size
    for k in range(first, stop):
        weight = bias[k % out_channels]
        values = maps[block, oy, k, first_column:first_column + width]  # 1-D: vectorised
        for r in range(width):
            totals[r] += weight * values[r]


@njit(cache=True, boundscheck=False, nogil=True)
def transposed_conv_fold_into(maps: Any, weight: Any, stride: int, padding: int,
                              out: Any, bias: Any, bias_term: Any) -> None:
    """The same transposed convolution for few output channels C (a first layer), where
    :func:`transposed_conv_into`'s products would be matrix-vector products: per input
    pixel one product (kh·kw·C × O)(O × N) gives its contributions to every output pixel
    its kernel reaches, each then added (contiguous numbers) onto that pixel,
    FOLD_COLUMN_BLOCK of the N = B'·R columns at a time.

    ``maps`` (blocks, Hi, Wi·O, N), ``weight`` (O, C, kh, kw), ``out`` (blocks, Ho, Wo·C, N);
    ``bias`` and ``bias_term`` as for :func:`transposed_conv_into`, each input pixel's share
    added right after its product has read it.
    """
    blocks, in_h, in_wo, columns = maps.shape
    out_channels, channels, kernel_h, kernel_w = weight.shape
    out_h = out.shape[1]
    out_w = out.shape[2] // channels
    in_w = in_wo // out_channels
    entries = kernel_h * kernel_w * channels
    matrix = np.empty((entries, out_channels), maps.dtype)  # rows (ky, kx, c)
    for ky in range(kernel_h):
        for kx in range(kernel_w):
            for c in range(channels):
                for o in range(out_channels):
                    matrix[(ky * kernel_w + kx) * channels + c, o] = weight[o, c, ky, kx]
    products = np.empty((entries, FOLD_COLUMN_BLOCK), maps.dtype)
    transposes = np.array([78, 78], np.uint8)  # "N", "N"
    scalars = np.array([1, 0], maps.dtype)  # α = 1, β = 0
    sizes = np.array([0, entries, out_channels, columns, out_channels, FOLD_COLUMN_BLOCK],
                     np.int32)  # m n k lda ldb ldc
    zero = out.dtype.type(0)
    with_bias = bias.size > 0
    for block in range(blocks):
        out[block] = zero
        if with_bias:
            bias_term[block] = zero
        for first_column in range(0, columns, FOLD_COLUMN_BLOCK):
            width = min(FOLD_COLUMN_BLOCK, columns - first_column)
            sizes[0] = width
            for oy in range(in_h):
                for ox in range(in_w):
                    source = maps[block, oy, ox * out_channels:, first_column:]
                    # column-major BLAS: productsᵀ (R × entries) = sourceᵀ (R × O) · matrixᵀ
                    _gemm(transposes, sizes, scalars, source, matrix, scalars[1:], products)
                    if with_bias:
                        add_bias_term(maps, block, oy, ox * out_channels,
                                      (ox + 1) * out_channels, first_column, bias,
                                      bias_term[block, first_column:first_column + width])
                    for ky in range(kernel_h):
                        y = oy * stride - padding + ky
                        if y < 0 or y >= out_h:
                            continue
                        for kx in range(kernel_w):
                            x = ox * stride - padding + kx
                            if x < 0 or x >= out_w:
                                continue
                            for c in range(channels):
                                contribution = products[(ky * kernel_w + kx) * channels + c]
                                target = out[block, y, x * channels + c, first_column:]
                                for r in range(width):
                                    target[r] += contribution[r]


# reassociation lets the bias sums vectorise (their order changes by round-off only)
@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def relu_step_into(coefficients: Any, lower_slope: Any, upper_slope_lower_side: Any,
                   slope: Any, intercept: Any, out: Any, bias: Any) -> None:
    """The ReLU step of :func:`nobound.bounds.deeppoly.relu_back_step`, rows-innermost:
    out[p, side, f, b, :] = A[p, side, f, b, :] ⊙ (the slope its sign and side choose),
    bias[p, side, b, :] = Σ_f A⁻ t (lower side) or A⁺ t (upper side).

    ``coefficients`` (P_a, S, F, B_a, R) with S ∈ {1, 2}; λ of the lower side
    ``lower_slope``, λ of the upper side ``upper_slope_lower_side``, s ``slope`` and t
    ``intercept`` are (P_x, F, B_x) in the coefficients' neuron order, each axis 1 or full;
    ``out`` is (P, 2, F, B, R) and ``bias`` (P, 2, B, R).
    """
    members, _, features, batch, rows = out.shape
    sides = coefficients.shape[1]
    zero = out.dtype.type(0)
    for p in range(members):
        pa = p if coefficients.shape[0] > 1 else 0
        px = p if slope.shape[0] > 1 else 0
        for side in range(2):
            totals = bias[p, side]
            totals[:] = zero
            for f in range(features):
                for b in range(batch):
                    bx = b if slope.shape[2] > 1 else 0
                    s = slope[px, f, bx]
                    t = intercept[px, f, bx]
                    source = coefficients[pa, min(side, sides - 1), f,
                                          b if coefficients.shape[3] > 1 else 0]
                    target = out[p, side, f, b]
                    total = totals[b]
                    if side == 0:  # lower: A⁺ λ + A⁻ s, intercept A⁻ t
                        lam = lower_slope[px, f, bx]
                        for r in range(rows):
                            value = source[r]
                            target[r] = value * (lam if value >= zero else s)
                            total[r] += min(value, zero) * t
                    else:  # upper: A⁺ s + A⁻ λ, intercept A⁺ t
                        lam = upper_slope_lower_side[px, f, bx]
                        for r in range(rows):
                            value = source[r]
                            target[r] = value * (s if value >= zero else lam)
                            total[r] += max(value, zero) * t


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def concretise_into(coefficients: Any, center: Any, radius: Any, value: Any,
                    spread: Any) -> None:
    """Eq. (2)'s two sums for rows-innermost coefficients on the input:
    value[p, s, b, :] = Σ_f A[p, s, f, b, :] c[b, f], spread[p, s, b, :] = Σ_f |A| r[b, f].

    ``coefficients`` (P_a, S, F, B_a, R); ``center``, ``radius`` (P_x, F, B_x) in the
    coefficients' neuron order, each axis 1 or full; ``value``, ``spread`` (P, S, B, R).
    """
    members, sides, batch, rows = value.shape
    features = coefficients.shape[2]
    zero = value.dtype.type(0)
    for p in range(members):
        pa = p if coefficients.shape[0] > 1 else 0
        px = p if center.shape[0] > 1 else 0
        for side in range(sides):
            values, spreads = value[p, side], spread[p, side]
            values[:] = zero
            spreads[:] = zero
            for f in range(features):
                for b in range(batch):
                    bx = b if center.shape[2] > 1 else 0
                    c, r = center[px, f, bx], radius[px, f, bx]
                    source = coefficients[pa, side, f, b if coefficients.shape[3] > 1 else 0]
                    total, width = values[b], spreads[b]
                    for k in range(rows):
                        total[k] += source[k] * c
                        width[k] += abs(source[k]) * r


@njit(cache=True, boundscheck=False, nogil=True)
def position_runs(row: Any, column: Any, stride: int, padding: int
                  ) -> tuple[Any, Any, Any, Any]:
    """Window rows (P_r, B_r, R) at neuron (``row``, ``column``) split into runs of
    consecutive rows at one position: run k of (p, b) is rows starts[p, b, k] …
    starts[p, b, k + 1] − 1 of the counts[p, b] runs, its window's top-left corner (tops[p,
    b, k], lefts[p, b, k]) = (i·stride − padding, j·stride − padding). Rows sorted by
    position (:func:`nobound.bounds.patches.by_position`) make the runs as long as the
    channels."""
    members, batch, rows = row.shape
    starts = np.zeros((members, batch, rows + 1), np.int64)
    tops = np.zeros((members, batch, rows), np.int64)
    lefts = np.zeros((members, batch, rows), np.int64)
    counts = np.zeros((members, batch), np.int64)
    for p in range(members):
        for b in range(batch):
            k = 0
            for r in range(rows):
                if r == 0 or row[p, b, r] != row[p, b, r - 1] or \
                        column[p, b, r] != column[p, b, r - 1]:
                    starts[p, b, k] = r
                    tops[p, b, k] = row[p, b, r] * stride - padding
                    lefts[p, b, k] = column[p, b, r] * stride - padding
                    k += 1
            starts[p, b, k] = rows
            counts[p, b] = k
    return starts, counts, tops, lefts


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def window_relu_step_into(coefficients: Any, lam: Any, slope: Any, intercept: Any,
                          row: Any, column: Any, stride: int, padding: int, out: Any,
                          bias: Any) -> None:
    """:func:`relu_step_into` for window rows stored rows-innermost: λ, s, t of a row at
    window position (u, v, c) are its maps' entries at (c, i·stride − padding + u,
    j·stride − padding + v) for the row's neuron (i, j), 0 outside the map (the zero-padded
    gather of the plain path). Every row of a run (:func:`position_runs`) reads the same
    entry, so the loop over a run's rows is the dense step's contiguous loop, both sides
    per entry.

    ``coefficients`` (P_a, S, K_h, K_w, C, B_a, R) with S ∈ {1, 2}; ``lam`` (both sides'
    λ), ``slope``, ``intercept`` (P_m, C, H, W, B_m), each neuron's samples together;
    ``row``, ``column`` (P_r, B_r, R);
    ``out`` (P, 2, K_h, K_w, C, B, R) and ``bias`` (P, 2, B, R); axes of length 1
    broadcast, all C-contiguous.
    """
    members, _, kernel_h, kernel_w, channels, batch, rows = out.shape
    sides = coefficients.shape[1]
    height, width = lam.shape[2], lam.shape[3]
    starts, counts, tops, lefts = position_runs(row, column, stride, padding)
    zero = out.dtype.type(0)
    for p in range(members):
        pa = p if coefficients.shape[0] > 1 else 0
        pm = p if lam.shape[0] > 1 else 0
        pr = p if row.shape[0] > 1 else 0
        bias[p] = zero
        for u in range(kernel_h):
            for v in range(kernel_w):
                for c in range(channels):
                    for b in range(batch):
                        bm = b if lam.shape[4] > 1 else 0
                        br = b if row.shape[1] > 1 else 0
                        ba = b if coefficients.shape[5] > 1 else 0
                        lam_map, s_map, t_map = lam[pm, c], slope[pm, c], intercept[pm, c]
                        lower_source = coefficients[pa, 0, u, v, c, ba]
                        upper_source = coefficients[pa, sides - 1, u, v, c, ba]
                        lower_row, upper_row = out[p, 0, u, v, c, b], out[p, 1, u, v, c, b]
                        lower_total, upper_total = bias[p, 0, b], bias[p, 1, b]
                        run_starts = starts[pr, br]
                        for k in range(counts[pr, br]):
                            first, stop = run_starts[k], run_starts[k + 1]
                            y, x = tops[pr, br, k] + u, lefts[pr, br, k] + v
                            lam_k, s, t = zero, zero, zero
                            if 0 <= y < height and 0 <= x < width:
                                lam_k, s, t = lam_map[y, x, bm], s_map[y, x, bm], \
                                    t_map[y, x, bm]
                            source = lower_source[first:stop]
                            target = lower_row[first:stop]
                            total = lower_total[first:stop]
                            for r in range(stop - first):  # lower: A⁺ λ + A⁻ s, A⁻ t
                                value = source[r]
                                target[r] = value * (lam_k if value >= zero else s)
                                total[r] += min(value, zero) * t
                            source = upper_source[first:stop]
                            target = upper_row[first:stop]
                            total = upper_total[first:stop]
                            for r in range(stop - first):  # upper: A⁺ s + A⁻ λ, A⁺ t
                                value = source[r]
                                target[r] = value * (s if value >= zero else lam_k)
                                total[r] += max(value, zero) * t


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def window_concretise_into(coefficients: Any, center: Any, radius: Any, row: Any,
                           column: Any, stride: int, padding: int, value: Any,
                           spread: Any) -> None:
    """:func:`concretise_into` for window rows stored rows-innermost on the input: c and r
    read at each row's window of the ``center`` and ``radius`` maps (P_m, C, H, W, B_m), 0
    outside them, one entry per run of rows (:func:`position_runs`).

    ``coefficients`` (P_a, S, K_h, K_w, C, B_a, R); ``row``, ``column`` (P_r, B_r, R);
    ``value``, ``spread`` (P, S, B, R).
    """
    members, sides, batch, rows = value.shape
    kernel_h, kernel_w, channels = coefficients.shape[2:5]
    height, width = center.shape[2], center.shape[3]
    starts, counts, tops, lefts = position_runs(row, column, stride, padding)
    zero = value.dtype.type(0)
    for p in range(members):
        pa = p if coefficients.shape[0] > 1 else 0
        pm = p if center.shape[0] > 1 else 0
        pr = p if row.shape[0] > 1 else 0
        value[p] = zero
        spread[p] = zero
        for side in range(sides):
            for u in range(kernel_h):
                for v in range(kernel_w):
                    for c in range(channels):
                        for b in range(batch):
                            bm = b if center.shape[4] > 1 else 0
                            br = b if row.shape[1] > 1 else 0
                            center_map, radius_map = center[pm, c], radius[pm, c]
                            source_row = coefficients[pa, side, u, v, c,
                                                      b if coefficients.shape[5] > 1 else 0]
                            value_row, spread_row = value[p, side, b], spread[p, side, b]
                            run_starts = starts[pr, br]
                            for k in range(counts[pr, br]):
                                y, x = tops[pr, br, k] + u, lefts[pr, br, k] + v
                                if not (0 <= y < height and 0 <= x < width):
                                    continue  # c = r = 0: adds nothing
                                middle, half = center_map[y, x, bm], radius_map[y, x, bm]
                                first, stop = run_starts[k], run_starts[k + 1]
                                source = source_row[first:stop]
                                total = value_row[first:stop]
                                width_k = spread_row[first:stop]
                                for r in range(stop - first):
                                    total[r] += source[r] * middle
                                    width_k[r] += abs(source[r]) * half


def warm_up() -> None:
    """Compile for float32 and float64 (cached on disk after the first process)."""
    for dtype in (np.float32, np.float64):
        weight = np.ones((1, 1, 2, 2), dtype=dtype)
        runs = tap_runs(weight, 1)
        for bias in (np.ones(1, dtype=dtype), np.empty(0, dtype=dtype)):
            transposed_conv_into(np.ones((1, 1, 1, 2), dtype=dtype), runs, 1, 1, 0,
                                 np.empty((1, 2, 2, 2), dtype=dtype), bias,
                                 np.empty((1, 2), dtype=dtype))
            transposed_conv_fold_into(np.ones((1, 1, 1, 2), dtype=dtype), weight, 1, 0,
                                      np.empty((1, 2, 2, 2), dtype=dtype), bias,
                                      np.empty((1, 2), dtype=dtype))
        line = np.ones((1, 1, 1), dtype=dtype)
        relu_step_into(np.ones((1, 1, 1, 1, 2), dtype=dtype), line, line, line, line,
                       np.empty((1, 2, 1, 1, 2), dtype=dtype),
                       np.empty((1, 2, 1, 2), dtype=dtype))
        concretise_into(np.ones((1, 1, 1, 1, 2), dtype=dtype), line, line,
                        np.empty((1, 1, 1, 2), dtype=dtype), np.empty((1, 1, 1, 2), dtype=dtype))
        window, position = np.ones((1, 1, 1, 1, 1, 1, 2), dtype=dtype), np.zeros((1, 1, 2),
                                                                                 np.int64)
        image = np.ones((1, 1, 1, 1, 1), dtype=dtype)
        window_relu_step_into(window, image, image, image, position, position, 1, 0,
                              np.empty((1, 2, 1, 1, 1, 1, 2), dtype=dtype),
                              np.empty((1, 2, 1, 2), dtype=dtype))
        window_concretise_into(window, image, image, position, position, 1, 0,
                               np.empty((1, 1, 1, 2), dtype=dtype),
                               np.empty((1, 1, 1, 2), dtype=dtype))
