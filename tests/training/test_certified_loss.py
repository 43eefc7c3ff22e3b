"""The robust loss on every relaxation (§2.1), mixing, L1, and batch accuracies."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff.tensor import Tensor
from nobound.backend import device_of, to_numpy
from nobound.bounds import compute_bounds, linf_ball, margin_spec
from nobound.nn.activation import Flatten
from nobound.nn.init import ibp_init
from nobound.nn.layers import Linear
from nobound.nn.sequential import Sequential
from nobound.nn.zoo import build_model
from nobound.training.certified_loss import RELAXATIONS, CertifiedObjective, certified_loss, l1_norm
from nobound.training.losses import cross_entropy
from nobound.training.perturbation import ParameterLayout


def tiny_problem(xp, batch=6, seed=0):
    model = build_model("cnn3_tiny", (1, 12, 12), 4, dtype=np.float64)
    ibp_init(model, seed)
    rng = np.random.default_rng(seed)
    for p in model.parameters():  # non-zero biases so every term matters
        p.data[...] += 0.05 * rng.normal(size=p.shape)
    if xp is not np:
        model.to(device_of(xp))
    x = xp.asarray(rng.uniform(size=(batch, 1, 12, 12)))
    targets = xp.asarray(rng.integers(0, 4, size=batch))
    return model, x, targets


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_robust_loss_is_cross_entropy_on_minus_the_margin_lower_bounds(xp, relaxation):
    model, x, targets = tiny_problem(xp)
    result = certified_loss(model, x, targets, 0.03, relaxation)
    bounds = compute_bounds(model, linf_ball(Tensor(x), 0.03), method=relaxation,
                            spec=margin_spec(targets, 4))
    lower = to_numpy(bounds.lower.data)
    expected = np.log1p(np.exp(-lower).sum(axis=-1)).mean()
    assert float(result.loss.data) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_array_equal(to_numpy(result.margin_lower), lower)
    # an upper bound on the worst-case loss is at least the natural loss
    assert float(result.robust_loss.data) >= float(result.natural_loss.data) - 1e-12


def test_mixing_and_l1_terms(xp):
    model, x, targets = tiny_problem(xp)
    robust = certified_loss(model, x, targets, 0.03, "ibp")
    natural = cross_entropy(model(Tensor(x)), targets)
    mixed = certified_loss(model, x, targets, 0.03, "ibp", robust_weight=0.25, l1_weight=0.01)
    weights_l1 = sum(float(abs(p.data).sum()) for name, p in model.named_parameters()
                     if name.endswith("weight"))
    expected = 0.75 * float(natural.data) + 0.25 * float(robust.robust_loss.data) \
        + 0.01 * weights_l1
    assert float(mixed.loss.data) == pytest.approx(expected, rel=1e-12)
    only_natural = certified_loss(model, x, targets, 0.03, "ibp", robust_weight=0.0)
    assert float(only_natural.loss.data) == pytest.approx(float(natural.data), rel=1e-12)


def test_l1_is_per_population_member():
    model, _, _ = tiny_problem(np)
    params = dict(model.named_parameters())
    layout = ParameterLayout.of(params)
    vectors = np.stack([layout.flatten(params), -2.0 * layout.flatten(params)])
    per_member = l1_norm(model, layout.to_tensors(vectors)).data
    single = float(l1_norm(model).data)
    np.testing.assert_allclose(per_member, [single, 2.0 * single], rtol=1e-12)


def test_certified_accuracy_needs_strictly_positive_margins():
    # logits = bias (zero weights): margins are exactly y_t − y_j, independent of x and eps
    model = Sequential(Flatten(), Linear(4, 3, dtype=np.float64))
    model.layers[1].bias.data[...] = [1.0, 0.0, 0.0]
    x = np.full((4, 1, 2, 2), 0.5)
    targets = np.array([0, 1, 2, 0])  # margins > 0 / = 0 (tie with class 2) / = 0 / > 0
    for relaxation in RELAXATIONS:
        result = certified_loss(model, x, targets, 0.1, relaxation)
        np.testing.assert_array_equal(result.margin_lower.min(axis=-1), [1.0, -1.0, -1.0, 1.0])
        assert float(result.certified_accuracy) == 0.5
    model.layers[1].bias.data[...] = [0.0, 0.0, 0.0]  # every margin exactly 0: no certificate
    result = certified_loss(model, x, targets, 0.1, "deeppoly")
    assert np.all(result.margin_lower == 0.0) and float(result.certified_accuracy) == 0.0
    assert float(result.natural_accuracy) == 0.5  # argmax ties go to class 0


def test_population_gives_one_loss_and_accuracy_per_member():
    model, x, targets = tiny_problem(np)
    params = dict(model.named_parameters())
    layout = ParameterLayout.of(params)
    center = layout.flatten(params)
    vectors = center + 0.05 * np.random.default_rng(1).standard_normal((3, layout.size))
    result = CertifiedObjective("crown-ibp")(model, x, targets, 0.02,
                                             params=layout.to_tensors(vectors))
    assert result.loss.shape == (3,) and result.certified_accuracy.shape == (3,)
    assert result.natural_accuracy.shape == (3,) and result.margin_lower.shape == (3, 6, 3)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError):
        CertifiedObjective("zonotope")
    with pytest.raises(ValueError):
        CertifiedObjective("ibp", robust_weight=1.5)
    with pytest.raises(ValueError):
        CertifiedObjective("ibp", l1_weight=-1.0)


def test_skipping_natural_metrics_changes_nothing_else():
    model, x, targets = tiny_problem(np)
    full = certified_loss(model, x, targets, 0.03, "deeppoly")
    lean = certified_loss(model, x, targets, 0.03, "deeppoly", natural_metrics=False)
    assert lean.natural_loss is None and lean.natural_accuracy is None
    assert float(lean.loss.data) == float(full.loss.data)
    np.testing.assert_array_equal(lean.margin_lower, full.margin_lower)
    mixed = certified_loss(model, x, targets, 0.03, "ibp", robust_weight=0.5,
                           natural_metrics=False)  # the loss needs the natural term
    assert mixed.natural_loss is not None


@pytest.mark.parametrize("relaxation", ["ibp", "deeppoly"])
def test_population_members_are_bounded_with_their_own_batch_statistics(relaxation):
    # A train-mode BatchNorm is bounded with the statistics of a clean pass under the same
    # parameters (CTBench). A population evaluated without natural metrics (RGS and PGPE
    # members) must still give every member the loss it has on its own.
    from nobound.nn.zoo import conv_net

    rng = np.random.default_rng(3)
    model = ibp_init(conv_net((1, 8, 8), 3, [(3, 3, 2, 1)], [6], batchnorm=True,
                              dtype=np.float64), 0)
    x, targets = rng.uniform(size=(5, 1, 8, 8)), rng.integers(0, 3, 5)
    model(Tensor(rng.uniform(size=(7, 1, 8, 8))))  # stale statistics of another batch
    params = dict(model.named_parameters())
    layout = ParameterLayout.of(params)
    vectors = layout.flatten(params) + 0.1 * rng.standard_normal((3, layout.size))
    population = certified_loss(model, x, targets, 0.05, relaxation,
                                params=layout.to_tensors(vectors), natural_metrics=False)
    for member, vector in enumerate(vectors):
        alone = certified_loss(model, x, targets, 0.05, relaxation,
                               params=layout.to_tensors(vector))
        np.testing.assert_allclose(population.loss.data[member], alone.loss.data,
                                   rtol=1e-10)
