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


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def window_relu_back_step_into(coefficients: Any, lam: Any, slope: Any, intercept: Any,
                               row: Any, column: Any, stride: int, padding: int, out: Any,
                               bias: Any) -> None:
    """:func:`relu_back_step_into` on windows: λ, s, t read straight from their maps
    (P_m, B, C, H, W) at each row's window — top-left (i·stride − padding, j·stride −
    padding) for the row's neuron (i, j) = (``row``, ``column``), (P_r, B_r, R) — and 0
    outside the map, as the zero-padded gather of the plain path.

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
    for p in range(members):
        pa = p if p_a > 1 else 0
        pm = p if p_m > 1 else 0
        pr = p if row.shape[0] > 1 else 0
        for b in range(batch):
            ba = b if b_a > 1 else 0
            bm = b if b_m > 1 else 0
            br = b if row.shape[1] > 1 else 0
            map_base = (pm * b_m + bm) * channels * height * width
            for r in range(rows):
                top = row[pr, br, r] * stride - padding
                left = column[pr, br, r] * stride - padding
                low_in = (((pa * sides) * b_a + ba) * rows + r) * window
                high_in = (((pa * sides + sides - 1) * b_a + ba) * rows + r) * window
                low_at = (((p * 2) * batch + b) * rows + r) * window
                high_at = (((p * 2 + 1) * batch + b) * rows + r) * window
                low_total = zero
                high_total = zero
                for k in range(window):  # λ = s = t = 0 outside the map: out = A · 0
                    out_flat[low_at + k] = a_flat[low_in + k] * zero
                    out_flat[high_at + k] = a_flat[high_in + k] * zero
                first = min(max(0, -left), kernel_w)  # window columns inside the map
                last = max(first, min(kernel_w, width - left))
                for c in range(channels):
                    for u in range(kernel_h):
                        y = top + u
                        if y < 0 or y >= height:
                            continue
                        offset = (c * kernel_h + u) * kernel_w
                        at = map_base + (c * height + y) * width + left
                        for v in range(first, last):
                            lam_value = lam_flat[at + v]
                            s_value = s_flat[at + v]
                            t_value = t_flat[at + v]
                            value = a_flat[low_in + offset + v]
                            out_flat[low_at + offset + v] = value * (
                                lam_value if value >= zero else s_value)
                            low_total += min(value, zero) * t_value
                            value = a_flat[high_in + offset + v]
                            out_flat[high_at + offset + v] = value * (
                                s_value if value >= zero else lam_value)
                            high_total += max(value, zero) * t_value
                bias[p, 0, b, r] = low_total
                bias[p, 1, b, r] = high_total


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def window_concretise_into(coefficients: Any, center: Any, radius: Any, row: Any,
                           column: Any, stride: int, padding: int, value: Any,
                           spread: Any) -> None:
    """value = Σ A c and spread = Σ |A| r over each row's window of the centre and radius
    maps (P_m, B, C, H, W), 0 outside them: (P, S, B, R) each, for coefficients
    (P_a, S, B_a, R, C, K_h, K_w)."""
    members, sides, batch, rows = value.shape
    channels, kernel_h, kernel_w = coefficients.shape[4:]
    height, width = center.shape[3], center.shape[4]
    zero = value.dtype.type(0)
    for p in range(members):
        pa = p if coefficients.shape[0] > 1 else 0
        pm = p if center.shape[0] > 1 else 0
        pr = p if row.shape[0] > 1 else 0
        for side in range(sides):
            for b in range(batch):
                ba = b if coefficients.shape[2] > 1 else 0
                br = b if row.shape[1] > 1 else 0
                for r in range(rows):
                    top = row[pr, br, r] * stride - padding
                    left = column[pr, br, r] * stride - padding
                    total = zero
                    width_total = zero
                    for c in range(channels):
                        for u in range(kernel_h):
                            y = top + u
                            if y < 0 or y >= height:
                                continue
                            for v in range(kernel_w):
                                x = left + v
                                if 0 <= x < width:
                                    a = coefficients[pa, side, ba, r, c, u, v]
                                    total += a * center[pm, b, c, y, x]
                                    width_total += abs(a) * radius[pm, b, c, y, x]
                    value[p, side, b, r] = total
                    spread[p, side, b, r] = width_total
