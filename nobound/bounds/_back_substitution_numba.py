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
                lines = cache[cell]
                if cached_for[cell] != image:
                    top, left = i * stride - padding, j * stride - padding
                    _gather_window(lam_flat, map_base, channels, height, width, top, left,
                                   kernel_h, kernel_w, lines[0])
                    _gather_window(s_flat, map_base, channels, height, width, top, left,
                                   kernel_h, kernel_w, lines[1])
                    _gather_window(t_flat, map_base, channels, height, width, top, left,
                                   kernel_h, kernel_w, lines[2])
                    cached_for[cell] = image
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
                box = cache[cell]
                if cached_for[cell] != image:
                    top, left = i * stride - padding, j * stride - padding
                    _gather_window(c_flat, map_base, channels, height, width, top, left,
                                   kernel_h, kernel_w, box[0])
                    _gather_window(r_flat, map_base, channels, height, width, top, left,
                                   kernel_h, kernel_w, box[1])
                    cached_for[cell] = image
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
