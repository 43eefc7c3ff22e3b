"""The eps ramp of Shi et al. (2021) and the step decays of lr and sigma (App. F)."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.training.schedules import EpsilonRamp, StepDecay

STEPS_PER_EPOCH = 40


def ramp_values(ramp: EpsilonRamp, epochs: int) -> np.ndarray:
    return np.array([ramp(s, STEPS_PER_EPOCH) for s in range(epochs * STEPS_PER_EPOCH)])


def test_smoothed_ramp_is_zero_before_start_and_target_after_end():
    ramp = EpsilonRamp(0.3, start_epoch=2, length_epochs=5)
    values = ramp_values(ramp, 10)
    start, end = 2 * STEPS_PER_EPOCH, 7 * STEPS_PER_EPOCH
    assert np.all(values[:start + 1] == 0.0)
    assert np.all(values[end:] == 0.3)
    assert np.all(values[start + 1:end] > 0) and np.all(values[start + 1:end] < 0.3)
    assert ramp.final_step(STEPS_PER_EPOCH) == end


def test_smoothed_ramp_is_polynomial_then_linear_with_matching_slope():
    ramp = EpsilonRamp(0.1, start_epoch=0, length_epochs=8, exponent=4.0, mid=0.25)
    values = ramp_values(ramp, 9)
    start, end = 0, 8 * STEPS_PER_EPOCH
    mid = int((end - start) * 0.25) + start
    # polynomial part: eps(s) ∝ (s − s₀)^β
    s = np.arange(1, mid)
    ratios = values[s] / values[1]
    np.testing.assert_allclose(ratios, (s / 1.0) ** 4.0, rtol=1e-12)
    # linear part: constant first differences up to the end
    differences = np.diff(values[mid:end + 1])
    np.testing.assert_allclose(differences, differences[0], rtol=1e-9)
    # the slope of the polynomial at the switch equals the linear slope (C¹ ramp)
    alpha = values[1]
    polynomial_slope = 4.0 * alpha * (mid - start) ** 3
    np.testing.assert_allclose(polynomial_slope, differences[0], rtol=1e-12)
    assert np.all(np.diff(values) >= 0)


def test_linear_ramp_and_no_ramp():
    linear = EpsilonRamp(0.2, start_epoch=1, length_epochs=2, kind="linear")
    for step in range(STEPS_PER_EPOCH, 3 * STEPS_PER_EPOCH + 1):
        expected = 0.2 * (step - STEPS_PER_EPOCH) / (2 * STEPS_PER_EPOCH)
        assert linear(step, STEPS_PER_EPOCH) == pytest.approx(expected, abs=1e-15)
    constant = EpsilonRamp(0.1, start_epoch=1, length_epochs=0)
    assert constant(STEPS_PER_EPOCH - 1, STEPS_PER_EPOCH) == 0.0
    assert constant(STEPS_PER_EPOCH, STEPS_PER_EPOCH) == 0.1


def test_a_ramp_too_short_for_its_polynomial_part_is_linear():
    ramp = EpsilonRamp(0.05, start_epoch=0, length_epochs=1, mid=0.25)
    values = [ramp(step, 3) for step in range(4)]  # 3 steps: ⌊3 · 0.25⌋ = 0 polynomial steps
    assert values == pytest.approx([0.0, 0.05 / 3, 0.1 / 3, 0.05])


def test_invalid_ramps_are_rejected():
    with pytest.raises(ValueError):
        EpsilonRamp(0.1, kind="cosine")
    with pytest.raises(ValueError):
        EpsilonRamp(0.1, length_epochs=3, exponent=1.5)
    with pytest.raises(ValueError):
        EpsilonRamp(-0.1)


def test_step_decay_counts_passed_milestones():
    lr = StepDecay(5e-5, (50, 60), 0.2)
    assert lr(0) == 5e-5 and lr(49) == 5e-5 and lr(49.99) == 5e-5
    assert lr(50) == pytest.approx(5e-5 * 0.2)
    assert lr(60) == pytest.approx(5e-5 * 0.04)
    assert lr(69) == pytest.approx(5e-5 * 0.04)
    sigma = StepDecay(1e-3, (50, 60), 0.4)  # App. F.3: same steps as the lr, factor 0.4
    assert sigma(55) / sigma(0) == pytest.approx(0.4)


