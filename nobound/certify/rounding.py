"""Floating-point-sound arithmetic for the verdict check: every result is a true bound.

NumPy rounds to nearest, so a computed float64 number is not a bound on the real number
it stands for. Two tools make the checker's numbers rigorous (docs/certifier.md,
"Floating-point soundness", derives them):

* **One rounding, one step outward.** For a single operation ∘ on floats,
  fl(a ∘ b) is within half a spacing of a ∘ b, so ``down(fl(a ∘ b)) ≤ a ∘ b ≤
  up(fl(a ∘ b))``, where ``up``/``down`` move to the next float (``np.nextafter``). This
  covers subnormals and the binade edges too (the spacing on the far side is never smaller
  than the half-spacing error on the near side).
* **Products with an error term.** For C = fl(A·B) with inner dimension n, whatever the
  summation order or FMA use of the BLAS (Higham, *Accuracy and Stability*, Thm 3.1, with
  the underflow term of Rump's bounds),

      |A·B − C| ≤ γ_n |A|·|B| + n η,     γ_n = n u / (1 − n u),  u = 2⁻⁵³,  η = 2⁻¹⁰⁷⁴,

  and S = fl(|A|·|B|) satisfies |A|·|B| ≤ S/(1 − γ_n) + n η. For n u ≤ 2⁻²⁰ this gives
  |A·B − C| ≤ 2.5 n u S + 2 n η, which :func:`matmul_error` evaluates rounding upward.

Inputs with inf or nan give inf or nan error terms; every caller compares with ``not x > 0``
so such a check fails (→ ``unknown``) instead of passing.
"""

from __future__ import annotations

import numpy as np

UNIT_ROUNDOFF = 2.0 ** -53
SMALLEST_SUBNORMAL = float(np.nextafter(0.0, 1.0))
# The error bound above assumes n·u ≤ 2⁻²⁰ (inner dimensions up to 2³³).
MAX_INNER_DIMENSION = 2 ** 33


def up(x: np.ndarray | float) -> np.ndarray:
    """The next float above: an upper bound of the real result of one rounded operation."""
    return np.nextafter(x, np.inf)


def down(x: np.ndarray | float) -> np.ndarray:
    """The next float below: a lower bound of the real result of one rounded operation."""
    return np.nextafter(x, -np.inf)


def gamma_factor(n: int) -> float:
    """An upper bound of 2.5 n u, the relative error factor of an n-term product."""
    if n > MAX_INNER_DIMENSION:
        raise ValueError(f"inner dimension {n} too large for the rounding-error bound")
    return float(up(2.5 * max(n, 1) * UNIT_ROUNDOFF))


def matmul_error(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, E) with C = fl(a @ b) and |a @ b − C| ≤ E elementwise, in real arithmetic."""
    n = a.shape[-1]
    product = a @ b
    magnitude = np.abs(a) @ np.abs(b)
    error = up(up(gamma_factor(n) * magnitude) + up(2.0 * n * SMALLEST_SUBNORMAL))
    return product, error


def upper_product(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """An upper bound of the real p @ q for non-negative p and q."""
    product, error = matmul_error(p, q)
    return up(product + error)


def lower_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A lower bound of the real a @ b (any signs)."""
    product, error = matmul_error(a, b)
    return down(product - error)


def product_error(result: np.ndarray) -> np.ndarray:
    """A bound of |x − fl(x)| for x a single real product or difference whose rounded
    value is ``result``: |x| u + η/2 ≤ 2 u |fl(x)| + η (for u |x| ≤ |fl(x)| + η)."""
    return up(up(2.0 * UNIT_ROUNDOFF * np.abs(result)) + SMALLEST_SUBNORMAL)


def lower_sum(*terms: np.ndarray | float) -> np.ndarray:
    """A lower bound of the real sum of float terms (rounded downward step by step)."""
    total = np.asarray(terms[0], np.float64)
    for term in terms[1:]:
        total = down(total + term)
    return total
