import numpy as np
import pytest

from nobound.analysis.landscape import descent_direction, loss_landscape
from nobound.autodiff.tensor import Tensor
from nobound.nn import build_model, kaiming_uniform
from nobound.training.certified_loss import certified_loss


@pytest.fixture
def setup():
    model = kaiming_uniform(build_model("cnn3_tiny", (1, 10, 10), 3, dtype=np.float64), seed=2)
    rng = np.random.default_rng(1)
    return model, rng.uniform(0, 1, (6, 1, 10, 10)), rng.integers(0, 3, 6)


def test_original_curve_is_normalised_and_matches_direct_evaluation(setup):
    model, x, y = setup
    offsets = np.linspace(-0.01, 0.01, 5)
    direction = np.random.default_rng(3).normal(size=model.num_parameters())
    direction /= np.linalg.norm(direction)
    (curve,) = loss_landscape(model, x, y, 0.02, ["ibp"], [], offsets, direction=direction)
    assert curve.mean[2] == pytest.approx(1.0, rel=1e-12)
    # replay one point by moving the parameters by hand
    reference = certified_loss(model, x, y, 0.02, "ibp").loss.item()
    start = 0
    for p in model.parameters():
        p.data += offsets[4] * direction[start:start + p.size].reshape(p.shape)
        start += p.size
    moved = certified_loss(model, x, y, 0.02, "ibp").loss.item()
    assert curve.mean[4] == pytest.approx(moved / reference, rel=1e-10)


def test_smoothed_curve_band_contains_mean_and_descent_direction_descends(setup):
    model, x, y = setup
    direction = descent_direction(model, Tensor(x), y, 0.02, "ibp")
    assert np.linalg.norm(direction) == pytest.approx(1.0)
    offsets = np.linspace(0, 1e-4, 3)
    original, smoothed = loss_landscape(model, x, y, 0.02, ["ibp"], [1e-3], offsets,
                                        direction=direction, samples=16)
    assert original.mean[1] < original.mean[0]  # a small step along −∇L lowers the loss
    assert smoothed.sigma == 1e-3
    assert all(lo <= m <= hi for lo, m, hi in zip(smoothed.band_low, smoothed.mean,
                                                   smoothed.band_high, strict=True))
    assert set(smoothed.scores) == {"max_finite_difference", "mean_second_difference",
                                    "deviation_from_convexity"}


def test_pgpe_surface_noise_shrinks_with_population_size(setup):
    # Fig. 8: with fresh samples at every point the estimated surface is noisy, and the
    # noise (mean |second difference|) falls as the population grows (≈ 1/√n).
    from nobound.analysis.landscape import pgpe_surfaces

    model, x, y = setup
    direction = np.random.default_rng(5).normal(size=model.num_parameters())
    direction /= np.linalg.norm(direction)
    offsets = np.linspace(-1e-3, 1e-3, 9)
    surfaces = pgpe_surfaces(model, x, y, 0.02, "ibp", [5e-2], [4, 64], offsets,
                             direction=direction)
    noise = {size: curve.scores["mean_second_difference"] for size, curve in surfaces}
    assert noise[64] < noise[4]
