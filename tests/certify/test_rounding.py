"""The checker's rounding primitives enclose the exact results, at adversarial magnitudes.

Every expected value is exact rational arithmetic (``fractions``) on the float inputs. The
inputs mix subnormals, tiny and huge normals, exact zeros, both signs and near-cancelling
pairs (so that the float products really are off, and an error term that is too small
fails), in every shape the back-substitution uses: one leaf (rows (R, n), one vector) or a
stack of leaves (rows (B, R, n) and/or vectors (B, n)).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from nobound.certify.checker import _through_stage
from nobound.certify.checker_layers import relu_lines
from nobound.certify.rounding import (
    lower_rows,
    product_error_rows,
    row_products,
    upper_product,
    upper_rows,
    upper_sum,
)

# magnitudes (powers of two) per class: subnormal, tiny normal, moderate, huge (products
# of two huge ones and their sums stay finite)
CLASSES = ((-1074, -1023), (-1010, -900), (-30, 30), (300, 470))
# for products of three factors (a stage's fold: rows, weights, magnitudes)
THREE_FACTORS = ((-1074, -1023), (-1010, -900), (-30, 30), (250, 320))


def adversarial(rng: np.random.Generator, shape: tuple[int, ...],
                signed: bool = True, classes: tuple = CLASSES) -> np.ndarray:
    """Floats of every class, some exact zeros, and near-cancelling neighbours."""
    kind = rng.integers(0, len(classes) + 1, size=shape)
    values = np.zeros(shape)
    for index, (low, high) in enumerate(classes):
        where = kind == index
        exponents = rng.integers(low, high, size=shape)
        values = np.where(where, np.ldexp(rng.uniform(1.0, 2.0, size=shape), exponents), values)
    values = np.where(kind == len(classes), 0.0, values)  # exact zeros
    flat = values.reshape(-1)
    for i in range(1, flat.size, 3):  # the next one nearly cancels its neighbour
        flat[i] = -flat[i - 1] * (1 + rng.uniform(-1e-12, 1e-12))
    if signed:
        values = values * rng.choice([-1.0, 1.0], size=shape)
    else:
        values = np.abs(values)
    return values


def exact_rows(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """rows · vector per row in exact arithmetic (the rows' and vector's leading axes
    broadcast), as an object array of Fractions."""
    shape = np.broadcast_shapes(rows.shape[:-2], vector.shape[:-1]) + rows.shape[-2:-1]
    rows = np.broadcast_to(rows, shape + rows.shape[-1:])
    vector = np.broadcast_to(vector[..., None, :], shape + vector.shape[-1:])
    out = np.empty(shape, object)
    for index in np.ndindex(*shape):
        out[index] = sum((Fraction(float(a)) * Fraction(float(b))
                          for a, b in zip(rows[index], vector[index], strict=True)), Fraction(0))
    return out


SHAPES = [((3, 5), (5,)), ((2, 3, 5), (5,)), ((3, 5), (2, 5)), ((2, 3, 5), (2, 5)),
          ((4, 1, 6), (4, 6)), ((3, 40), (40,))]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rows_shape, vector_shape", SHAPES)
def test_row_products_enclose_the_exact_products(seed: int, rows_shape: tuple,
                                                 vector_shape: tuple) -> None:
    rng = np.random.default_rng(seed)
    rows, vector = adversarial(rng, rows_shape), adversarial(rng, vector_shape)
    product, error = row_products(rows, vector)
    exact = exact_rows(rows, vector)
    low = lower_rows(rows, vector)
    assert product.shape == error.shape == low.shape == exact.shape
    for index in np.ndindex(*exact.shape):
        assert abs(exact[index] - Fraction(float(product[index]))) <= \
            Fraction(float(error[index]))
        assert Fraction(float(low[index])) <= exact[index]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rows_shape, vector_shape", SHAPES)
def test_upper_rows_and_sums_are_above_the_exact_ones(seed: int, rows_shape: tuple,
                                                      vector_shape: tuple) -> None:
    """The one-product bound of non-negative operands (no second product for |A|·|B|)."""
    rng = np.random.default_rng(100 + seed)
    p, q = adversarial(rng, rows_shape, False), adversarial(rng, vector_shape, False)
    high, exact = upper_rows(p, q), exact_rows(p, q)
    assert all(Fraction(float(high[i])) >= exact[i] for i in np.ndindex(*exact.shape))
    total = upper_sum(p)
    for index in np.ndindex(*p.shape[:-1]):
        assert Fraction(float(total[index])) >= sum(Fraction(float(x)) for x in p[index])
    if len(vector_shape) == 1:  # the matrix form: p @ q for a matrix q
        matrix = np.stack([q, q[::-1]], axis=1)
        high = upper_product(p, matrix)
        for column in range(2):
            exact = exact_rows(p, matrix[:, column])
            assert all(Fraction(float(high[i + (column,)])) >= exact[i]
                       for i in np.ndindex(*exact.shape))


@pytest.mark.parametrize("seed", range(8))
def test_folded_product_errors_cover_the_exact_errors(seed: int) -> None:
    """Σ_j |x_j − fl(x_j)| m_j ≤ product_error_rows(fl(x), m) for single products x."""
    rng = np.random.default_rng(200 + seed)
    values, slopes = adversarial(rng, (2, 3, 7)), rng.uniform(0, 1, (2, 7)) * \
        np.ldexp(1.0, rng.integers(-60, 2, (2, 7)))
    rounded = values * slopes[:, None, :]
    magnitude = adversarial(rng, (2, 7), False)
    folded = product_error_rows(rounded, magnitude)
    for b, r in np.ndindex(2, 3):
        exact = sum(abs(Fraction(float(values[b, r, j])) * Fraction(float(slopes[b, j]))
                        - Fraction(float(rounded[b, r, j]))) * Fraction(float(magnitude[b, j]))
                    for j in range(7))
        assert exact <= Fraction(float(folded[b, r]))


def _stage_error(rows: np.ndarray, error: np.ndarray, weight: np.ndarray,
                 radius: np.ndarray, product: np.ndarray, below: np.ndarray) -> Fraction:
    """max over real Λ*, W* within the radii of |Λ* W* − fl(Λ W)| · below, exactly: per
    entry the worst case is |ΛW − fl(ΛW)| + E(|W| + R) + |Λ| R."""
    total = Fraction(0)
    for j in range(weight.shape[1]):
        exact = sum((Fraction(float(a)) * Fraction(float(w))
                     for a, w in zip(rows, weight[:, j], strict=True)), Fraction(0))
        widening = sum((Fraction(float(e)) * (abs(Fraction(float(w))) + Fraction(float(r)))
                        + abs(Fraction(float(a))) * Fraction(float(r))
                        for a, e, w, r in zip(rows, error, weight[:, j], radius[:, j],
                                              strict=True)), Fraction(0))
        total += (abs(exact - Fraction(float(product[j]))) + widening) * \
            Fraction(float(below[j]))
    return total


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("with_radius", [False, True])
def test_a_stage_folds_its_whole_product_error(seed: int, with_radius: bool) -> None:
    """The re-associated fold of a stage (no error matrix) is above the exact worst case
    Σ_j |Λ* W* − fl(Λ W)|_j below_j, for one leaf and for a stack of leaves."""
    rng = np.random.default_rng(300 + seed)
    rows = adversarial(rng, (3, 6), classes=THREE_FACTORS)
    weight = adversarial(rng, (6, 4), classes=THREE_FACTORS)
    error = adversarial(rng, (3, 6), False, THREE_FACTORS) * (seed % 2)  # with, without
    radius = adversarial(rng, (6, 4), False, THREE_FACTORS) if with_radius else \
        np.zeros((6, 4))
    below = adversarial(rng, (2, 4), False, THREE_FACTORS)  # two leaves' magnitudes
    product, fold = _through_stage(rows, error if seed % 2 else None, weight, radius, below)
    assert fold.shape == (2, 3)
    for b, r in np.ndindex(2, 3):
        assert _stage_error(rows[r], error[r], weight, radius, product[r], below[b]) <= \
            Fraction(float(fold[b, r]))


@pytest.mark.parametrize("seed", range(8))
def test_relu_back_substitution_step_encloses_the_exact_rows(seed: int) -> None:
    """Lines.back on a stack of leaves: |Λ'* − Λ'| folded with the input magnitudes is
    below the returned F, and its constant below the exact Λ⁻·t."""
    rng = np.random.default_rng(400 + seed)
    lower = -np.abs(adversarial(rng, (2, 5), classes=THREE_FACTORS))
    upper = lower + np.abs(adversarial(rng, (2, 5), classes=THREE_FACTORS))
    lines = relu_lines((lower, upper))
    rows = adversarial(rng, (2, 3, 5), classes=THREE_FACTORS)
    inputs = np.maximum(np.abs(lower), np.abs(upper))
    moved, folded, constant = lines.back(rows, inputs)
    for b, r in np.ndindex(2, 3):
        error, negative_part = Fraction(0), Fraction(0)
        for j in range(5):
            row = Fraction(float(rows[b, r, j]))
            slope = lines.lower_slope[b, j] if row >= 0 else lines.upper_slope[b, j]
            error += abs(row * Fraction(float(slope)) - Fraction(float(moved[b, r, j]))) * \
                Fraction(float(inputs[b, j]))
            if row < 0:
                negative_part += row * Fraction(float(lines.upper_intercept[b, j]))
        assert error <= Fraction(float(folded[b, r]))
        assert Fraction(float(constant[b, r])) <= negative_part


@pytest.mark.parametrize("seed", range(3))
def test_upper_bounds_hold_for_long_sums_and_underflowing_products(seed: int) -> None:
    """Long sums accumulate many roundings in one float (the relative term must cover
    them) and products below η/2 round to 0 (the underflow term must cover them)."""
    rng = np.random.default_rng(500 + seed)
    long = rng.uniform(0.0, 1.0, (2, 4000))
    # ones first, then terms below half a spacing of the running sum: each is lost
    lost = np.full((1, 4000), 0.49 * 2.0 ** -52), np.ones(4000)
    lost[0][0, :32] = 1.0
    vanishing = np.full((1, 100), 2.0 ** -537), np.full(100, 0.98 * 2.0 ** -538)  # 0.49 η
    assert float((vanishing[0] @ vanishing[1])[0]) == 0.0
    for p, q in ((long[:1], long[1]), lost, vanishing):
        exact = exact_rows(p, q)[0]
        assert Fraction(float(upper_rows(p, q)[0])) >= exact
        assert Fraction(float(upper_product(p, q[:, None])[0, 0])) >= exact
    assert Fraction(float(upper_sum(long[0]))) >= sum(Fraction(float(x)) for x in long[0])


@pytest.mark.parametrize("seed", range(8))
def test_a_mostly_zero_stage_is_multiplied_in_csr_form_with_the_same_bounds(seed: int) -> None:
    """A weight matrix with few non-zeros (a convolution unrolled) goes through the CSR
    products, whose sums run in another order: the fold still covers the exact worst case,
    |W|·v stays above the exact product, and both agree with the dense path's values."""
    from nobound.certify.rounding import (
        SPARSE_SHARE,
        stage_matrix,
        upper_magnitude_times,
    )

    rng = np.random.default_rng(500 + seed)
    rows = adversarial(rng, (3, 40), classes=THREE_FACTORS)
    weight = adversarial(rng, (40, 12), classes=THREE_FACTORS)
    weight[rng.random(weight.shape) > 0.12] = 0.0
    assert np.count_nonzero(weight) <= SPARSE_SHARE * weight.size
    assert stage_matrix(weight).transposed_csr is not None  # the CSR path is the one tested
    below = adversarial(rng, (2, 12), False, THREE_FACTORS)
    product, fold = _through_stage(rows, None, weight, np.zeros_like(weight), below)
    dense = rows @ weight
    finite = np.isfinite(dense)
    assert np.allclose(product[finite], dense[finite], rtol=1e-12, atol=0)
    for b, r in np.ndindex(2, 3):
        assert _stage_error(rows[r], np.zeros(40), weight, np.zeros_like(weight),
                            product[r], below[b]) <= Fraction(float(fold[b, r]))
    vector = adversarial(rng, (12,), False)
    reach = upper_magnitude_times(stage_matrix(weight), vector)
    stacked = upper_magnitude_times(stage_matrix(weight), below)
    for i in range(40):
        assert sum((abs(Fraction(float(w))) * Fraction(float(v))
                    for w, v in zip(weight[i], vector, strict=True)), Fraction(0)) <= \
            Fraction(float(reach[i]))
        for b in range(2):
            assert sum((abs(Fraction(float(w))) * Fraction(float(v))
                        for w, v in zip(weight[i], below[b], strict=True)), Fraction(0)) <= \
                Fraction(float(stacked[b, i]))
