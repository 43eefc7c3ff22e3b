import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nobound.analysis.landscape_scores import (
    deviation_from_convexity,
    landscape_scores,
    max_finite_difference,
    mean_second_difference,
)


def test_quadratic_has_constant_second_difference():
    t = np.linspace(-2, 2, 41)
    step = t[1] - t[0]
    assert mean_second_difference(3.0 * t**2, step) == pytest.approx(6.0, rel=1e-9)


def test_step_function_finite_difference_is_jump_over_step():
    t = np.linspace(-1, 1, 21)
    values = np.where(t > 0.05, 2.5, 0.5)
    assert max_finite_difference(values, t[1] - t[0]) == pytest.approx(2.0 / 0.1)


def test_concave_parabola_deviation_is_quarter_range_squared():
    t = np.linspace(-1, 1, 21)  # the midpoint 0 is on the grid
    # D(−t²) = max λ(1−λ)(x−y)² = (1/4)·2² at λ = 1/2, x = −1, y = 1
    assert deviation_from_convexity(-t**2) == pytest.approx(1.0, rel=1e-12)


@given(st.lists(st.floats(-3, 3), min_size=2, max_size=5))
def test_convex_curves_have_non_positive_deviation(slopes_increments):
    # a piecewise-linear function with non-decreasing slopes is convex
    slopes = np.cumsum(np.abs(slopes_increments))
    values = np.concatenate([[0.0], np.cumsum(np.repeat(slopes, 4))])
    assert deviation_from_convexity(values) <= 1e-9


def test_scores_reject_bad_grids():
    with pytest.raises(ValueError):
        landscape_scores([1.0, 2.0], 0.1)
    with pytest.raises(ValueError):
        max_finite_difference([1.0, 2.0, 3.0], 0.0)
