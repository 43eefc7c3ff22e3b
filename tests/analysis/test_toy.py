import numpy as np
import pytest

from nobound.analysis.toy import (
    deeppoly_toy_bound,
    local_minima,
    sampled_smoothing,
    smoothed_sensitivity_toy,
    smoothed_toy_bound,
    toy_bound_closed_form,
)


def test_deeppoly_bound_of_toy_matches_paper_formula():
    w = np.linspace(-2, 2, 81)
    np.testing.assert_allclose(deeppoly_toy_bound(w), toy_bound_closed_form(w), atol=1e-12)


def test_deeppoly_toy_bound_is_discontinuous_at_zero():
    left, right = deeppoly_toy_bound([-1e-6, 1e-6])
    assert left == pytest.approx(1.0, abs=1e-9)
    assert right == pytest.approx(1e-6, abs=1e-9)


def test_sampled_smoothing_agrees_with_closed_form_within_its_error():
    w = np.linspace(-1.5, 1.5, 13)
    mean, standard_error = sampled_smoothing(toy_bound_closed_form, w, 0.5, 20000, seed=3)
    exact = smoothed_toy_bound(w, 0.5)
    assert np.all(np.abs(mean - exact) <= 5 * standard_error + 1e-12)


def test_sensitivity_toy_minima_behave_as_in_fig3b():
    w = np.linspace(-3, 3, 6001)
    original = local_minima(w, smoothed_sensitivity_toy(w, 0.0))
    assert len(original) == 2 and -1.5 < original[0] < 0  # the bad local minimum
    assert len(local_minima(w, smoothed_sensitivity_toy(w, 0.25))) == 2  # σ too small
    kept = local_minima(w, smoothed_sensitivity_toy(w, 0.5))
    assert len(kept) == 1 and abs(kept[0] - 1.0) < 0.05  # σ right: one, aligned minimum
    shifted = local_minima(w, smoothed_sensitivity_toy(w, 1.0))
    assert len(shifted) == 1 and abs(shifted[0] - 1.0) > 0.1  # σ too large: misaligned
