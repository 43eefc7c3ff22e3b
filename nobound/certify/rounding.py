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
  For non-negative A and B the product is its own magnitude, so one product suffices:
  A·B ≤ (C + n η)/(1 − γ_n) ≤ (1 + 2.5 n u) C + 2 n η (:func:`upper_product`).

The ``*_rows`` forms take coefficient rows (..., R, n) and one vector (n,) or a stack of
vectors (..., n) that broadcasts with the rows' leading axes, and give one value per row
(..., R): the checker's back-substitution over a stack of leaves, in one BLAS call where
the shapes allow. Which call computes a product changes its rounding, never the bound.

Inputs with inf or nan give inf or nan error terms; every caller compares with ``not x > 0``
so such a check fails (→ ``unknown``) instead of passing.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_array

from nobound.certify.derived import derived_once

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


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """fl(a @ b); a stack of matrices times one matrix as one BLAS call."""
    if a.ndim > 2 and b.ndim == 2:
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[1])
    return a @ b


# A stored matrix with at most this share of non-zeros is multiplied in CSR form (a
# convolution unrolled into a dense matrix: 1.5–5.5 % on VNN-COMP's oval21 nets)
SPARSE_SHARE = 0.2


@dataclass(frozen=True)
class StageMatrix:
    """A stored weight matrix W (m, n) as the checker multiplies it — ``rows · W`` and
    ``|W| · v`` — with |W| formed once, and CSR copies of Wᵀ and |W| when W is mostly
    zeros. The bounds of the module docstring hold for any summation order and a zero
    term adds no error, so the CSR products carry the same error terms (n the inner
    dimension, as for the dense product)."""

    dense: np.ndarray
    magnitude: np.ndarray
    transposed_csr: Any | None
    magnitude_csr: Any | None


def _make_stage_matrix(weight: np.ndarray) -> StageMatrix:
    magnitude = np.abs(weight)
    sparse = np.count_nonzero(weight) <= SPARSE_SHARE * weight.size
    return StageMatrix(weight, magnitude, csr_array(weight.T) if sparse else None,
                       csr_array(magnitude) if sparse else None)


def stage_matrix(weight: np.ndarray) -> StageMatrix:
    """The :class:`StageMatrix` of a host matrix, made once per array."""
    return derived_once("stage matrix", weight, _make_stage_matrix)


def any_nonzero(array: np.ndarray) -> bool:
    """Whether a stored array (a weight radius: all zeros for weights exact in float64)
    has a non-zero entry, decided once per array."""
    return derived_once("any non-zero", array, lambda a: bool(np.any(a)))


def rows_times_matrix(rows: np.ndarray, matrix: StageMatrix) -> np.ndarray:
    """fl(rows @ W) for rows (..., R, m): dense, or (Wᵀ rowsᵀ)ᵀ in CSR form."""
    if matrix.transposed_csr is None:
        return matmul(rows, matrix.dense)
    flat = rows.reshape(-1, rows.shape[-1])
    product = matrix.transposed_csr @ np.ascontiguousarray(flat.T)
    return np.ascontiguousarray(product.T).reshape(*rows.shape[:-1], matrix.dense.shape[1])


def upper_magnitude_times(matrix: StageMatrix, vector: np.ndarray) -> np.ndarray:
    """An upper bound of the real |W| · v per output for v ≥ 0 (n,) or a stack (..., n):
    (m,) or (..., m) — :func:`upper_rows` with |W| as the rows."""
    if matrix.magnitude_csr is None:
        return upper_rows(matrix.magnitude, vector)
    if vector.ndim == 1:
        product = matrix.magnitude_csr @ vector
    else:
        flat = vector.reshape(-1, vector.shape[-1])
        product = np.ascontiguousarray((matrix.magnitude_csr @ np.ascontiguousarray(flat.T)).T)
        product = product.reshape(*vector.shape[:-1], matrix.dense.shape[0])
    return _upper(product, matrix.dense.shape[1])


def _rows_times(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """fl(rows · vector) per row: rows (..., R, n), vector (n,) or (..., n) → (..., R)."""
    if vector.ndim == 1:
        if rows.ndim <= 2:
            return rows @ vector
        return (rows.reshape(-1, rows.shape[-1]) @ vector).reshape(rows.shape[:-1])
    if rows.ndim == 2:  # one set of rows for a stack of vectors
        return vector @ rows.T
    return (rows @ vector[..., None])[..., 0]


def _error(magnitude: np.ndarray, n: int) -> np.ndarray:
    """2.5 n u S + 2 n η rounded upward: the error of a product whose magnitude is S."""
    return up(up(gamma_factor(n) * magnitude) + up(2.0 * n * SMALLEST_SUBNORMAL))


def _upper(product: np.ndarray, n: int) -> np.ndarray:
    """(1 + 2.5 n u) C + 2 n η rounded upward: above the real product of non-negative
    operands whose float product is C (module doc)."""
    return up(up(float(up(1.0 + gamma_factor(n))) * product)
              + up(2.0 * n * SMALLEST_SUBNORMAL))


def matmul_error(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, E) with C = fl(a @ b) and |a @ b − C| ≤ E elementwise, in real arithmetic."""
    return matmul(a, b), _error(matmul(np.abs(a), np.abs(b)), a.shape[-1])


def upper_product(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """An upper bound of the real p @ q for non-negative p and q."""
    return _upper(matmul(p, q), p.shape[-1])


def lower_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A lower bound of the real a @ b (any signs)."""
    product, error = matmul_error(a, b)
    return down(product - error)


def row_products(rows: np.ndarray, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, E): C = fl(rows · vector) per row and |rows · vector − C| ≤ E (module doc)."""
    return (_rows_times(rows, vector),
            _error(_rows_times(np.abs(rows), np.abs(vector)), rows.shape[-1]))


def lower_rows(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """A lower bound of the real rows · vector per row (any signs)."""
    product, error = row_products(rows, vector)
    return down(product - error)


def upper_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """An upper bound of the real p · q per row, for non-negative p and q."""
    return _upper(_rows_times(p, q), p.shape[-1])


def upper_sum(values: np.ndarray) -> np.ndarray:
    """An upper bound of the real sum of non-negative values over the last axis (a product
    with a vector of ones, whose products are exact: the product bound holds)."""
    return _upper(values.sum(axis=-1), values.shape[-1])


def product_error(result: np.ndarray) -> np.ndarray:
    """A bound of |x − fl(x)| for x a single real product or difference whose rounded
    value is ``result``: |x| u + η/2 ≤ 2 u |fl(x)| + η (for u |x| ≤ |fl(x)| + η)."""
    return up(up(2.0 * UNIT_ROUNDOFF * np.abs(result)) + SMALLEST_SUBNORMAL)


def product_error_rows(results: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """An upper bound of Σ_j product_error(results)_j · m_j per row (m = ``magnitude`` ≥ 0)
    without the error matrix: 2u Σ_j |r_j| m_j + η Σ_j m_j, each sum bounded above."""
    scaled = up(2.0 * UNIT_ROUNDOFF * upper_rows(np.abs(results), magnitude))
    return up(scaled + up(SMALLEST_SUBNORMAL * upper_sum(magnitude)[..., None]))


def lower_sum(*terms: np.ndarray | float) -> np.ndarray:
    """A lower bound of the real sum of float terms (rounded downward step by step)."""
    total = np.asarray(terms[0], np.float64)
    for term in terms[1:]:
        total = down(total + term)
    return total


# --------------------------------------------------------------- S-shaped activations
# NumPy's exp and tanh are not correctly rounded (their error depends on the libm or SIMD
# code in use), so the checker does not use them for bounds. Python's decimal module
# computes exp correctly rounded ("The result is correctly rounded using the
# ROUND_HALF_EVEN rounding mode", its documentation), and its add and divide can round
# toward ±∞. From exp's result e at 40 digits, the true value lies in [e⁻, e⁺] (the
# neighbouring 40-digit numbers: a rounding to nearest is never farther than a neighbour);
# everything after that rounds outward, and float(Decimal) is correctly rounded, so one
# step outward (up/down) gives float bounds.
_DIGITS = 40
_NEAREST = decimal.Context(prec=_DIGITS, rounding=decimal.ROUND_HALF_EVEN, traps=[])
_FLOOR = decimal.Context(prec=_DIGITS, rounding=decimal.ROUND_FLOOR, traps=[])
_CEILING = decimal.Context(prec=_DIGITS, rounding=decimal.ROUND_CEILING, traps=[])
_ONE, _ZERO = decimal.Decimal(1), decimal.Decimal(0)


def _exp_enclosure(x: float) -> tuple[decimal.Decimal, decimal.Decimal]:
    """Decimal numbers around the real e^x (x a float, read exactly)."""
    value = _NEAREST.exp(decimal.Decimal(x))
    return _NEAREST.max(_NEAREST.next_minus(value), _ZERO), _NEAREST.next_plus(value)


def _to_floats(low: decimal.Decimal, high: decimal.Decimal) -> tuple[float, float]:
    return float(down(float(low))), float(up(float(high)))


def _sigmoid_one(x: float) -> tuple[float, float]:
    if np.isnan(x):
        return np.nan, np.nan
    low, high = _exp_enclosure(-x)                     # σ(x) = 1 / (1 + e^{−x}), decreasing
    return _to_floats(_FLOOR.divide(_ONE, _CEILING.add(_ONE, high)),   # in e^{−x}
                      _CEILING.divide(_ONE, _FLOOR.add(_ONE, low)))


def _tanh_one(x: float) -> tuple[float, float]:
    if np.isnan(x) or x == 0:   # tanh 0 = 0 exactly (the formula below leaves ±10⁻³⁹)
        return x, x
    low, high = _exp_enclosure(2 * x)                  # tanh x = 1 − 2 / (1 + e^{2x}) (2x exact
    two = decimal.Decimal(2)                            # unless it overflows: then ±1 anyway)
    return _to_floats(_FLOOR.subtract(_ONE, _CEILING.divide(two, _FLOOR.add(_ONE, low))),
                      _CEILING.subtract(_ONE, _FLOOR.divide(two, _CEILING.add(_ONE, high))))


def _enclose(function: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    pairs = [function(float(v)) for v in x.reshape(-1)]
    low = np.array([p[0] for p in pairs], np.float64).reshape(x.shape)
    high = np.array([p[1] for p in pairs], np.float64).reshape(x.shape)
    return low, high


def sigmoid_enclosure(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) with lo ≤ 1 / (1 + e^{−x}) ≤ hi in real arithmetic, elementwise."""
    return _enclose(_sigmoid_one, x)


def tanh_enclosure(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) with lo ≤ tanh x ≤ hi in real arithmetic, elementwise."""
    return _enclose(_tanh_one, x)
