"""Compiled loop (Numba) for one ReLU step of back-substitution, both sides in one pass.

The same arithmetic as :func:`nobound.bounds.deeppoly.relu_back_step` — each coefficient
times λ or s by its sign and side, the intercept t collected where the sign asks for it —
reading A once and writing A' once instead of the five array passes of the NumPy path
(sign mask, slope choice, product, A⁺ and A⁻ with their contractions). Serial and
GIL-free, like the other compiled loops. Importing this module raises ``ImportError``
without Numba.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit


# reassociation lets the intercept sums vectorise (their order changes by round-off only);
# no other fast-math flag: NaN and infinities keep their meaning
@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def relu_back_step_into(coefficients: Any, lower_slope: Any, upper_slope_lower_side: Any,
                        slope: Any, intercept: Any, out: Any, bias: Any) -> None:
    """out[p, side, b, r] = A ⊙ slope chosen by sign and side; bias[p, side, b, r] = the
    intercept terms (A⁻ · t on the lower side, A⁺ · t on the upper side), summed in the
    arrays' precision.

    ``coefficients`` (P_a, S, B_a, R, n) with S ∈ {1, 2}; the λ of the lower side
    ``lower_slope``, the λ of the upper side ``upper_slope_lower_side``, s ``slope`` and t
    ``intercept`` are (P_x, B_x, R_x, n), each axis 1 or full (broadcast); ``out`` is
    (P, 2, B, R, n) and ``bias`` (P, 2, B, R), both C-contiguous.
    """
    members, _, batch, rows, n = out.shape
    sides = coefficients.shape[1]
    zero = out.dtype.type(0)
    for p in range(members):
        pa = p if coefficients.shape[0] > 1 else 0
        for b in range(batch):
            ba = b if coefficients.shape[2] > 1 else 0
            for r in range(rows):
                lam_l = lower_slope[p if lower_slope.shape[0] > 1 else 0,
                                    b if lower_slope.shape[1] > 1 else 0,
                                    r if lower_slope.shape[2] > 1 else 0]
                lam_u = upper_slope_lower_side[
                    p if upper_slope_lower_side.shape[0] > 1 else 0,
                    b if upper_slope_lower_side.shape[1] > 1 else 0,
                    r if upper_slope_lower_side.shape[2] > 1 else 0]
                s = slope[p if slope.shape[0] > 1 else 0, b if slope.shape[1] > 1 else 0,
                          r if slope.shape[2] > 1 else 0]
                t = intercept[p if intercept.shape[0] > 1 else 0,
                              b if intercept.shape[1] > 1 else 0,
                              r if intercept.shape[2] > 1 else 0]
                source = coefficients[pa, 0, ba, r]
                target = out[p, 0, b, r]
                total = zero
                for k in range(n):  # lower side: A⁺ λ + A⁻ s, intercept A⁻ t
                    value = source[k]
                    target[k] = value * (lam_l[k] if value >= zero else s[k])
                    total += min(value, zero) * t[k]
                bias[p, 0, b, r] = total
                source = coefficients[pa, sides - 1, ba, r]
                target = out[p, 1, b, r]
                total = zero
                for k in range(n):  # upper side: A⁺ s + A⁻ λ, intercept A⁺ t
                    value = source[k]
                    target[k] = value * (s[k] if value >= zero else lam_u[k])
                    total += max(value, zero) * t[k]
                bias[p, 1, b, r] = total


def warm_up() -> None:
    """Compile for float32 and float64 (cached on disk after the first process)."""
    for dtype in (np.float32, np.float64):
        a = np.ones((1, 1, 1, 1, 2), dtype=dtype)
        v = np.ones((1, 1, 1, 2), dtype=dtype)
        relu_back_step_into(a, v, v, v, v, np.empty((1, 2, 1, 1, 2), dtype=dtype),
                            np.empty((1, 2, 1, 1), dtype=dtype))


@njit(cache=True, boundscheck=False, nogil=True)
def _gather_window(flat: Any, base: int, channels: int, height: int, width: int, top: int,
                   left: int, kernel_h: int, kernel_w: int, out: Any) -> None:
    """out[(c, u, v)] = the (C, H, W) image at flat offset ``base`` of ``flat``, at
    (c, top + u, left + v); 0 outside the image (the zero padding)."""
    first = min(max(0, -left), kernel_w)  # window columns inside the image
    last = max(first, min(kernel_w, width - left))
    for c in range(channels):
        for u in range(kernel_h):
            offset = (c * kernel_h + u) * kernel_w
            y = top + u
            if y < 0 or y >= height:
                out[offset:offset + kernel_w] = 0
                continue
            at = base + (c * height + y) * width + left
            out[offset:offset + first] = 0
            for v in range(first, last):
                out[offset + v] = flat[at + v]
            out[offset + last:offset + kernel_w] = 0


@njit(inline="always", boundscheck=False, nogil=True)
def _cached_windows(maps: Any, cache: Any, cached_for: Any, cell: int, image: int,
                    base: int, channels: int, height: int, width: int, top: int, left: int,
                    kernel_h: int, kernel_w: int) -> Any:
    """``cache[cell]``: the window at (top, left) of each flat map in ``maps`` (a tuple),
    gathered by :func:`_gather_window` unless the cell already holds map image ``image``."""
    windows = cache[cell]
    if cached_for[cell] != image:
        for m in range(len(maps)):
            _gather_window(maps[m], base, channels, height, width, top, left, kernel_h,
                           kernel_w, windows[m])
        cached_for[cell] = image
    return windows


@njit(cache=True, boundscheck=False, nogil=True)
def _grid_cells(row: Any, column: Any) -> tuple[int, int]:
    """(rows, columns) of the smallest grid holding every row's neuron position."""
    if row.size == 0:
        return 0, 0
    return row.max() + 1, column.max() + 1


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def window_relu_back_step_into(coefficients: Any, lam: Any, slope: Any, intercept: Any,
                               row: Any, column: Any, stride: int, padding: int, out: Any,
                               bias: Any) -> None:
    """:func:`relu_back_step_into` on windows: λ, s, t read from their maps (P_m, B, C, H, W)
    at each row's window — top-left (i·stride − padding, j·stride − padding) for the row's
    neuron (i, j) = (``row``, ``column``), (P_r, B_r, R) — and 0 outside the map, as the
    zero-padded gather of the plain path.

    Rows at the same position (i, j) share their window, so each map's window is gathered
    once per position and map image into a small cache; the rows then run over contiguous
    windows, a loop the compiler vectorises.

    ``coefficients`` (P_a, S, B_a, R, C, K_h, K_w); ``out`` (P, 2, B, R, C, K_h, K_w);
    ``bias`` (P, 2, B, R); all C-contiguous (flat offsets below).
    """
    members, _, batch, rows, channels, kernel_h, kernel_w = out.shape
    p_a, sides, b_a = coefficients.shape[0], coefficients.shape[1], coefficients.shape[2]
    p_m, b_m, height, width = lam.shape[0], lam.shape[1], lam.shape[3], lam.shape[4]
    window = channels * kernel_h * kernel_w
    a_flat, out_flat = coefficients.ravel(), out.ravel()
    lam_flat, s_flat, t_flat = lam.ravel(), slope.ravel(), intercept.ravel()
    zero = out.dtype.type(0)
    grid_h, grid_w = _grid_cells(row, column)
    cache = np.empty((grid_h * grid_w, 3, window), dtype=out.dtype)
    cached_for = np.full(grid_h * grid_w, -1, dtype=np.int64)  # the map image it holds
    for p in range(members):
        pa = p if p_a > 1 else 0
        pm = p if p_m > 1 else 0
        pr = p if row.shape[0] > 1 else 0
        for b in range(batch):
            ba = b if b_a > 1 else 0
            bm = b if b_m > 1 else 0
            br = b if row.shape[1] > 1 else 0
            image = pm * b_m + bm
            map_base = image * channels * height * width
            for r in range(rows):
                i, j = row[pr, br, r], column[pr, br, r]
                cell = i * grid_w + j
                top, left = i * stride - padding, j * stride - padding
                lines = _cached_windows((lam_flat, s_flat, t_flat), cache, cached_for, cell,
                                        image, map_base, channels, height, width, top, left,
                                        kernel_h, kernel_w)
                lam_w, s_w, t_w = lines[0], lines[1], lines[2]
                start = (((pa * sides) * b_a + ba) * rows + r) * window
                at = (((p * 2) * batch + b) * rows + r) * window
                source, target = a_flat[start:start + window], out_flat[at:at + window]
                total = zero
                for k in range(window):  # lower side: A⁺ λ + A⁻ s, intercept A⁻ t
                    value = source[k]
                    positive = value >= zero
                    target[k] = value * (lam_w[k] if positive else s_w[k])
                    total += (zero if positive else value) * t_w[k]
                bias[p, 0, b, r] = total
                start = (((pa * sides + sides - 1) * b_a + ba) * rows + r) * window
                at = (((p * 2 + 1) * batch + b) * rows + r) * window
                source, target = a_flat[start:start + window], out_flat[at:at + window]
                total = zero
                for k in range(window):  # upper side: A⁺ s + A⁻ λ, intercept A⁺ t
                    value = source[k]
                    positive = value >= zero
                    target[k] = value * (s_w[k] if positive else lam_w[k])
                    total += (value if positive else zero) * t_w[k]
                bias[p, 1, b, r] = total


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def window_concretise_into(coefficients: Any, center: Any, radius: Any, row: Any,
                           column: Any, stride: int, padding: int, value: Any,
                           spread: Any) -> None:
    """value = Σ A c and spread = Σ |A| r over each row's window of the centre and radius
    maps (P_m, B, C, H, W), 0 outside them: (P, S, B, R) each, for coefficients
    (P_a, S, B_a, R, C, K_h, K_w), C-contiguous. Windows are cached per position as in
    :func:`window_relu_back_step_into`."""
    members, sides, batch, rows = value.shape
    channels, kernel_h, kernel_w = coefficients.shape[4:]
    p_a, b_a = coefficients.shape[0], coefficients.shape[2]
    p_m, b_m, height, width = center.shape[0], center.shape[1], center.shape[3], center.shape[4]
    window = channels * kernel_h * kernel_w
    a_flat, c_flat, r_flat = coefficients.ravel(), center.ravel(), radius.ravel()
    zero = value.dtype.type(0)
    grid_h, grid_w = _grid_cells(row, column)
    cache = np.empty((grid_h * grid_w, 2, window), dtype=value.dtype)
    cached_for = np.full(grid_h * grid_w, -1, dtype=np.int64)
    for p in range(members):
        pa = p if p_a > 1 else 0
        pm = p if p_m > 1 else 0
        pr = p if row.shape[0] > 1 else 0
        for b in range(batch):
            ba = b if b_a > 1 else 0
            bm = b if b_m > 1 else 0
            br = b if row.shape[1] > 1 else 0
            image = pm * b_m + bm
            map_base = image * channels * height * width
            for r in range(rows):
                i, j = row[pr, br, r], column[pr, br, r]
                cell = i * grid_w + j
                top, left = i * stride - padding, j * stride - padding
                box = _cached_windows((c_flat, r_flat), cache, cached_for, cell, image,
                                      map_base, channels, height, width, top, left,
                                      kernel_h, kernel_w)
                center_w, radius_w = box[0], box[1]
                for side in range(sides):
                    start = (((pa * sides + side) * b_a + ba) * rows + r) * window
                    source = a_flat[start:start + window]
                    total = zero
                    width_total = zero
                    for k in range(window):
                        total += source[k] * center_w[k]
                        width_total += abs(source[k]) * radius_w[k]
                    value[p, side, b, r] = total
                    spread[p, side, b, r] = width_total


# ----------------------------------------------------------------------------- VJPs
# The vector-Jacobian products of the two steps above (derived in
# nobound.bounds.kernels.fused_relu_back_step). Every gradient is *added* into its
# (zeroed) array, so inputs broadcast over members, batch or rows sum their rows' terms.


@njit(inline="always", boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def _side_vjp(source: Any, grad: Any, grad_bias: Any, on: Any, off: Any, t: Any,
              d_source: Any, d_on: Any, d_off: Any, d_t: Any, lower_side: bool,
              assign: bool, want_source: bool, want_on: bool, want_off: bool,
              want_t: bool) -> None:
    """One side of one row: A' = A ⊙ (``on`` where A ≥ 0, else ``off``) and b' = Σ A⁻ t
    (``lower_side``) or Σ A⁺ t; adds the VJP for upstream gradients ``grad`` (of A') and
    ``grad_bias`` (of b') into d_source, d_on, d_off, d_t (those wanted) — or, with
    ``assign``, writes d_source's (the row's first visit: no zeroed array to read).

    Each gradient is its own loop: fewer arrays per loop let the compiler vectorise it
    (its runtime overlap checks stay few), and the row is in L1 for the next loop."""
    zero = source.dtype.type(0)
    n = source.shape[0]
    if want_source:  # ∂A'/∂A = the chosen slope; ∂b'/∂A = t on the side's sign (0 at A = 0)
        for k in range(n):
            value = source[k]
            chosen = on[k] if value >= zero else off[k]
            collected = value < zero if lower_side else value > zero
            part = grad[k] * chosen + (grad_bias * t[k] if collected else zero)
            if assign:
                d_source[k] = part
            else:
                d_source[k] += part
    if want_on:
        for k in range(n):
            value = source[k]
            d_on[k] += grad[k] * value if value >= zero else zero
    if want_off:
        for k in range(n):
            value = source[k]
            d_off[k] += zero if value >= zero else grad[k] * value
    if want_t:
        if lower_side:
            for k in range(n):
                d_t[k] += grad_bias * min(source[k], zero)
        else:
            for k in range(n):
                d_t[k] += grad_bias * max(source[k], zero)


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def relu_back_step_vjp_into(coefficients: Any, lam_lower: Any, lam_upper: Any, slope: Any,
                            intercept: Any, grad_out: Any, grad_bias: Any,
                            d_coefficients: Any, d_lam_lower: Any, d_lam_upper: Any,
                            d_slope: Any, d_intercept: Any, wanted: Any, assign: bool
                            ) -> None:
    """The VJP of :func:`relu_back_step_into`: upstream ``grad_out`` (P, 2, B, R, n) and
    ``grad_bias`` (P, 2, B, R) added into the gradients of the inputs, each of its input's
    shape (broadcast axes summed). ``wanted`` (5 booleans) says which of d_coefficients,
    d_lam_lower, d_lam_upper, d_slope, d_intercept to fill (the others are stand-ins of
    one row, (1, 1, 1, 1, n) or (1, 1, 1, n)). With ``assign`` (the coefficients are not
    broadcast over members or batch, so each row is visited once) d_coefficients is
    written, not added to, on a row's first side (it may come uninitialised)."""
    members, _, batch, rows, _ = grad_out.shape
    sides = coefficients.shape[1]
    want_a, want_ll, want_lu, want_s, want_t = wanted[0], wanted[1], wanted[2], wanted[3], \
        wanted[4]
    for p in range(members):
        pa = p if coefficients.shape[0] > 1 else 0
        pl = p if lam_lower.shape[0] > 1 else 0
        pu = p if lam_upper.shape[0] > 1 else 0
        ps = p if slope.shape[0] > 1 else 0
        pt = p if intercept.shape[0] > 1 else 0
        for b in range(batch):
            ba = b if coefficients.shape[2] > 1 else 0
            bl = b if lam_lower.shape[1] > 1 else 0
            bu = b if lam_upper.shape[1] > 1 else 0
            bs = b if slope.shape[1] > 1 else 0
            bt = b if intercept.shape[1] > 1 else 0
            for r in range(rows):
                rl = r if lam_lower.shape[2] > 1 else 0
                ru = r if lam_upper.shape[2] > 1 else 0
                rs = r if slope.shape[2] > 1 else 0
                rt = r if intercept.shape[2] > 1 else 0
                s, t = slope[ps, bs, rs], intercept[pt, bt, rt]
                # an unwanted gradient's array is a (1, 1, 1, n) stand-in, never written
                d_s = d_slope[ps, bs, rs] if want_s else d_slope[0, 0, 0]
                d_t = d_intercept[pt, bt, rt] if want_t else d_intercept[0, 0, 0]
                d_ll = d_lam_lower[pl, bl, rl] if want_ll else d_lam_lower[0, 0, 0]
                d_lu = d_lam_upper[pu, bu, ru] if want_lu else d_lam_upper[0, 0, 0]
                for side in range(2):
                    on = lam_lower[pl, bl, rl] if side == 0 else s
                    off = s if side == 0 else lam_upper[pu, bu, ru]
                    d_on = d_ll if side == 0 else d_s
                    d_off = d_s if side == 0 else d_lu
                    want_on = want_ll if side == 0 else want_s
                    want_off = want_s if side == 0 else want_lu
                    a_side = min(side, sides - 1)
                    _side_vjp(coefficients[pa, a_side, ba, r], grad_out[p, side, b, r],
                              grad_bias[p, side, b, r], on, off, t,
                              d_coefficients[pa, a_side, ba, r] if want_a else
                              d_coefficients[0, 0, 0, 0],
                              d_on, d_off, d_t, side == 0, assign and (side == 0 or sides == 2),
                              want_a, want_on, want_off, want_t)


@njit(cache=True, boundscheck=False, nogil=True)
def _scatter_window(flat: Any, base: int, channels: int, height: int, width: int, top: int,
                    left: int, kernel_h: int, kernel_w: int, values: Any) -> None:
    """The adjoint of :func:`_gather_window`: add ``values`` (c, u, v) onto the (C, H, W)
    image at flat offset ``base`` at (c, top + u, left + v), dropping what falls outside."""
    first = min(max(0, -left), kernel_w)
    last = max(first, min(kernel_w, width - left))
    for c in range(channels):
        for u in range(kernel_h):
            y = top + u
            if y < 0 or y >= height:
                continue
            offset = (c * kernel_h + u) * kernel_w
            at = base + (c * height + y) * width + left
            for v in range(first, last):
                flat[at + v] += values[offset + v]


@njit(cache=True, boundscheck=False, nogil=True)
def _flush_window_grads(grads: Any, d_flat: Any, wanted_maps: Any, cell: int, image: int,
                        grid_w: int, channels: int, height: int, width: int, stride: int,
                        padding: int, kernel_h: int, kernel_w: int) -> None:
    """Scatter one cell's accumulated window gradients (one per map of ``d_flat``) onto
    their maps' image ``image``, and zero them for the next."""
    i, j = cell // grid_w, cell % grid_w
    top, left = i * stride - padding, j * stride - padding
    base = image * channels * height * width
    for m in range(len(d_flat)):
        if wanted_maps[m]:
            _scatter_window(d_flat[m], base, channels, height, width, top, left, kernel_h,
                            kernel_w, grads[m])
            grads[m][:] = 0


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def window_relu_back_step_vjp_into(coefficients: Any, lam: Any, slope: Any, intercept: Any,
                                   row: Any, column: Any, stride: int, padding: int,
                                   grad_out: Any, grad_bias: Any, d_coefficients: Any,
                                   d_lam: Any, d_slope: Any, d_intercept: Any,
                                   wanted: Any, assign: bool) -> None:
    """The VJP of :func:`window_relu_back_step_into`: upstream ``grad_out``
    (P, 2, B, R, C, K_h, K_w) and ``grad_bias`` (P, 2, B, R) added into d_coefficients
    (the coefficients' shape) and into the maps' gradients d_lam, d_slope, d_intercept
    (P_m, B, C, H, W) — each row's window gradient scattered back onto its map (the adjoint
    of the zero-padded gather; positions outside the image drop out). ``wanted``: which of
    the four to fill (4 booleans; the others may be stand-ins); ``assign`` as in
    :func:`relu_back_step_vjp_into`.

    As the forward pass caches each position's window of the maps, the window gradients of
    rows at one position are summed in a per-position buffer and scattered once per
    position and map image.
    """
    members, _, batch, rows, channels, kernel_h, kernel_w = grad_out.shape
    p_a, sides, b_a = coefficients.shape[0], coefficients.shape[1], coefficients.shape[2]
    p_m, b_m, height, width = lam.shape[0], lam.shape[1], lam.shape[3], lam.shape[4]
    window = channels * kernel_h * kernel_w
    want_a, want_lam, want_s, want_t = wanted[0], wanted[1], wanted[2], wanted[3]
    wanted_maps = wanted[1:]
    a_flat, g_flat = coefficients.ravel(), grad_out.ravel()
    d_a_flat = d_coefficients.ravel()
    lam_flat, s_flat, t_flat = lam.ravel(), slope.ravel(), intercept.ravel()
    d_flat = (d_lam.ravel(), d_slope.ravel(), d_intercept.ravel())
    dtype = grad_out.dtype
    grid_h, grid_w = _grid_cells(row, column)
    cells = grid_h * grid_w
    cache = np.empty((cells, 3, window), dtype=dtype)
    cached_for = np.full(cells, -1, dtype=np.int64)
    grads = np.zeros((cells, 3, window), dtype=dtype)  # λ, s, t gradients per position
    grads_for = np.full(cells, -1, dtype=np.int64)
    for p in range(members):
        pa = p if p_a > 1 else 0
        pm = p if p_m > 1 else 0
        pr = p if row.shape[0] > 1 else 0
        for b in range(batch):
            ba = b if b_a > 1 else 0
            bm = b if b_m > 1 else 0
            br = b if row.shape[1] > 1 else 0
            image = pm * b_m + bm
            map_base = image * channels * height * width
            for r in range(rows):
                i, j = row[pr, br, r], column[pr, br, r]
                cell = i * grid_w + j
                top, left = i * stride - padding, j * stride - padding
                lines = _cached_windows((lam_flat, s_flat, t_flat), cache, cached_for, cell,
                                        image, map_base, channels, height, width, top, left,
                                        kernel_h, kernel_w)
                cell_grads = grads[cell]
                if grads_for[cell] != image:
                    if grads_for[cell] >= 0:
                        _flush_window_grads(cell_grads, d_flat, wanted_maps, cell,
                                            grads_for[cell], grid_w, channels, height, width,
                                            stride, padding, kernel_h, kernel_w)
                    grads_for[cell] = image
                lam_w, s_w, t_w = lines[0], lines[1], lines[2]
                d_lam_w, d_s_w, d_t_w = cell_grads[0], cell_grads[1], cell_grads[2]
                for side in range(2):
                    start = (((pa * sides + min(side, sides - 1)) * b_a + ba) * rows + r) \
                        * window
                    at = (((p * 2 + side) * batch + b) * rows + r) * window
                    source = a_flat[start:start + window]
                    d_source = d_a_flat[start:start + window] if want_a else d_a_flat[:0]
                    grad = g_flat[at:at + window]
                    if side == 0:  # lower side: λ where A ≥ 0, s where A < 0
                        _side_vjp(source, grad, grad_bias[p, 0, b, r], lam_w, s_w, t_w,
                                  d_source, d_lam_w, d_s_w, d_t_w, True, assign, want_a,
                                  want_lam, want_s, want_t)
                    else:  # upper side: s where A ≥ 0, λ where A < 0
                        _side_vjp(source, grad, grad_bias[p, 1, b, r], s_w, lam_w, t_w,
                                  d_source, d_s_w, d_lam_w, d_t_w, False,
                                  assign and sides == 2, want_a, want_s, want_lam, want_t)
    for cell in range(cells):
        if grads_for[cell] >= 0:
            _flush_window_grads(grads[cell], d_flat, wanted_maps, cell, grads_for[cell],
                                grid_w, channels, height, width, stride, padding, kernel_h,
                                kernel_w)


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def window_concretise_vjp_into(coefficients: Any, center: Any, radius: Any, row: Any,
                               column: Any, stride: int, padding: int, grad_value: Any,
                               grad_spread: Any, d_coefficients: Any, d_center: Any,
                               d_radius: Any, wanted: Any) -> None:
    """The VJP of :func:`window_concretise_into` (value = Σ A c, spread = Σ |A| r over each
    row's window): upstream ``grad_value``, ``grad_spread`` (P, S, B, R) added into
    d_coefficients (the coefficients' shape; ∂|A|/∂A = sign A, 0 at 0) and into the maps'
    gradients d_center, d_radius (P_m, B, C, H, W), scattered back as in
    :func:`window_relu_back_step_vjp_into`. ``wanted``: which of the three to fill."""
    members, sides, batch, rows = grad_value.shape
    channels, kernel_h, kernel_w = coefficients.shape[4:]
    p_a, b_a = coefficients.shape[0], coefficients.shape[2]
    p_m, b_m, height, width = center.shape[0], center.shape[1], center.shape[3], center.shape[4]
    window = channels * kernel_h * kernel_w
    want_a, want_c, want_r = wanted[0], wanted[1], wanted[2]
    wanted_maps = wanted[1:]
    a_flat, d_a_flat = coefficients.ravel(), d_coefficients.ravel()
    c_flat, r_flat = center.ravel(), radius.ravel()
    d_flat = (d_center.ravel(), d_radius.ravel())
    zero = grad_value.dtype.type(0)
    grid_h, grid_w = _grid_cells(row, column)
    cells = grid_h * grid_w
    cache = np.empty((cells, 2, window), dtype=grad_value.dtype)
    cached_for = np.full(cells, -1, dtype=np.int64)
    grads = np.zeros((cells, 2, window), dtype=grad_value.dtype)
    grads_for = np.full(cells, -1, dtype=np.int64)
    for p in range(members):
        pa = p if p_a > 1 else 0
        pm = p if p_m > 1 else 0
        pr = p if row.shape[0] > 1 else 0
        for b in range(batch):
            ba = b if b_a > 1 else 0
            bm = b if b_m > 1 else 0
            br = b if row.shape[1] > 1 else 0
            image = pm * b_m + bm
            map_base = image * channels * height * width
            for r in range(rows):
                i, j = row[pr, br, r], column[pr, br, r]
                cell = i * grid_w + j
                top, left = i * stride - padding, j * stride - padding
                box = _cached_windows((c_flat, r_flat), cache, cached_for, cell, image,
                                      map_base, channels, height, width, top, left,
                                      kernel_h, kernel_w)
                cell_grads = grads[cell]
                if grads_for[cell] != image:
                    if grads_for[cell] >= 0:
                        _flush_window_grads(cell_grads, d_flat, wanted_maps, cell,
                                            grads_for[cell], grid_w, channels, height, width,
                                            stride, padding, kernel_h, kernel_w)
                    grads_for[cell] = image
                center_w, radius_w = box[0], box[1]
                d_center_w, d_radius_w = cell_grads[0], cell_grads[1]
                for side in range(sides):
                    start = (((pa * sides + side) * b_a + ba) * rows + r) * window
                    source = a_flat[start:start + window]
                    g_value, g_spread = grad_value[p, side, b, r], grad_spread[p, side, b, r]
                    if want_a:
                        d_source = d_a_flat[start:start + window]
                        for k in range(window):
                            value = source[k]
                            spread = radius_w[k] if value > zero else \
                                (-radius_w[k] if value < zero else zero)
                            d_source[k] += g_value * center_w[k] + g_spread * spread
                    if want_c:
                        for k in range(window):
                            d_center_w[k] += g_value * source[k]
                    if want_r:
                        for k in range(window):
                            d_radius_w[k] += g_spread * abs(source[k])
    for cell in range(cells):
        if grads_for[cell] >= 0:
            _flush_window_grads(grads[cell], d_flat, wanted_maps, cell, grads_for[cell],
                                grid_w, channels, height, width, stride, padding, kernel_h,
                                kernel_w)


@njit(cache=True, boundscheck=False, nogil=True)
def fold_pixel_rows_into(products: Any, in_h: int, in_w: int, kernel_h: int, kernel_w: int,
                         stride: int, padding: int, scratch: Any, out: Any,
                         first: int) -> None:
    """The scatter-add half of a transposed convolution, from pixel rows.

    ``products`` (n · in_h · in_w, kernel_h · kernel_w · C) holds, for each of n maps and
    each input pixel (i, j), that pixel's contribution to the kernel_h × kernel_w patch of
    the output it touches, ordered (p, q, c). For map m this adds row (i, j) into
    out[first + m, c, i·stride + p − padding, j·stride + q − padding] over every (p, q, c)
    inside the (C, H, W) map, positions in the zero padding dropped.

    Each map is accumulated channels-last in ``scratch`` (Hp, Wp, C), padded so that every
    patch fits: a patch row (q, c) is then kernel_w · C contiguous numbers, one vector add
    (written with slices, which the compiler vectorises; indexing the flat arrays directly
    was three times slower). The map is then copied out channel-first, its padding
    cropped. Every output element is a sum of the same terms as the plain col2im's, in
    another order.
    """
    count = products.shape[0] // (in_h * in_w)
    channels = out.shape[1]
    padded_w = scratch.shape[1]
    flat = scratch.ravel()
    span = kernel_w * channels
    zero = out.dtype.type(0)
    for m in range(count):
        flat[:] = zero
        base = m * in_h * in_w
        for i in range(in_h):
            for j in range(in_w):
                row = products[base + i * in_w + j]
                for p in range(kernel_h):
                    at = ((i * stride + p) * padded_w + j * stride) * channels
                    target = flat[at:at + span]
                    source = row[p * span:(p + 1) * span]
                    for k in range(span):
                        target[k] += source[k]
        _channels_first(flat, padded_w, padding, out[first + m])


@njit(boundscheck=False, nogil=True)
def _channels_first(flat: Any, padded_w: int, padding: int, target: Any) -> None:
    """target[c, h, w] = the padded channels-last map ``flat`` at (h + pad, w + pad, c)."""
    channels, height, width = target.shape
    for c in range(channels):
        for h in range(height):
            at = ((h + padding) * padded_w + padding) * channels + c
            line = target[c, h]
            for w in range(width):
                line[w] = flat[at + w * channels]


@njit(cache=True, boundscheck=False, nogil=True)
def fold_kernel_rows_into(products: Any, in_h: int, in_w: int, kernel_h: int,
                          kernel_w: int, stride: int, padding: int, scratch: Any, out: Any,
                          first: int) -> None:
    """The same scatter-add as :func:`fold_pixel_rows_into`, from kernel rows: for maps
    with few channels, whose patch rows are too short to vectorise.

    ``products`` (count, C · kernel_h · kernel_w, in_h · in_w) holds, for each map m and
    kernel entry (c, p, q), its contribution from every input pixel (i, j); it is
    added to out[first + m, c, i·stride + p − padding, j·stride + q − padding]. For a
    fixed (c, p, q, i) these are in_w contiguous numbers landing on every stride-th output
    column. ``scratch`` (C, Hp, stride, Wq) holds a map split by column phase,
    x = w + padding = stride · k + b at [c, h + padding, b, k], so each such run is added
    onto contiguous numbers; the phases are interleaved into ``out`` at the end.
    """
    channels, height, width = out.shape[1], out.shape[2], out.shape[3]
    flat = scratch.ravel()
    zero = out.dtype.type(0)
    for m in range(products.shape[0]):
        flat[:] = zero
        for c in range(channels):
            for p in range(kernel_h):
                for q in range(kernel_w):
                    row = products[m, (c * kernel_h + p) * kernel_w + q]
                    phase, shift = q % stride, q // stride
                    for i in range(in_h):
                        at = i * in_w
                        source = row[at:at + in_w]
                        target = scratch[c, i * stride + p, phase, shift:shift + in_w]
                        for j in range(in_w):
                            target[j] += source[j]
        target_map = out[first + m]
        for c in range(channels):
            for h in range(height):
                line = target_map[c, h]
                for phase in range(stride):
                    w = (phase - padding) % stride  # the first column of this phase
                    source = scratch[c, h + padding, phase]
                    base = (w + padding) // stride
                    for k in range((width - w + stride - 1) // stride):
                        line[w + k * stride] = source[base + k]
