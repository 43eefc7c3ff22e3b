"""Compiled loop (Numba) for the ReLU step of rows that each carry their own sub-domain.

The same arithmetic as the NumPy step in
:func:`nobound.certify.beta_crown_intermediate.relu_rows_step`
— each coefficient times the lower slope or the upper slope by its sign, the upper
intercept collected where the coefficient is negative — reading each sub-domain's lines
at the row's sub-domain instead of gathering them into row-sized arrays first, and writing
the new coefficients once. Importing this module raises ``ImportError`` without Numba.
"""

from __future__ import annotations

from typing import Any

from numba import njit


@njit(cache=True, boundscheck=False, nogil=True, fastmath={"reassoc", "nsz"})
def relu_rows_step_into(through: Any, domain: Any, lower_slope: Any, slope: Any,
                        intercept: Any, out: Any, constant: Any) -> None:
    """out[r] = through[r] ⊙ (lower_slope if through ≥ 0 else slope)[domain[r]];
    constant[r] += Σ min(through[r], 0) ⊙ intercept[domain[r]].

    ``through``, ``out`` (R, n); ``domain`` (R,) integers; the lines (N, n)."""
    rows, n = through.shape
    zero = through.dtype.type(0)
    for r in range(rows):
        d = domain[r]
        total = zero
        for i in range(n):
            value = through[r, i]
            if value > zero:
                out[r, i] = value * lower_slope[d, i]
            else:
                out[r, i] = value * slope[d, i]
                total += value * intercept[d, i]
        constant[r] += total
