"""Cross-entropy on points and on bounds (paper §2.1), with and without a population axis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nobound.autodiff import Tensor
from nobound.autodiff.gradcheck import check_grads
from nobound.training.losses import accuracy, cross_entropy, robust_cross_entropy

FIXTURE_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow])


def naive_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ln(1 + Σ_{i≠t} exp(y_i − y_t)), one row at a time."""
    losses = []
    for row, target in zip(logits, targets, strict=True):
        others = [np.exp(row[i] - row[target]) for i in range(len(row)) if i != target]
        losses.append(np.log1p(sum(others)))
    return np.array(losses)


@st.composite
def classification(draw, max_value: float = 20.0):
    batch, classes = draw(st.integers(1, 5)), draw(st.integers(2, 6))
    logits = draw(hnp.arrays(np.float64, (batch, classes),
                             elements=st.floats(-max_value, max_value)))
    targets = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, classes - 1)))
    return logits, targets


@FIXTURE_SETTINGS
@given(problem=classification())
def test_cross_entropy_equals_the_papers_formula(xp, problem):
    logits, targets = problem
    per_sample = cross_entropy(Tensor(xp.asarray(logits)), xp.asarray(targets), "none")
    expected = naive_cross_entropy(logits, targets)
    assert np.allclose(per_sample.numpy(), expected, rtol=1e-12, atol=1e-14)
    mean = cross_entropy(Tensor(xp.asarray(logits)), xp.asarray(targets)).item()
    total = cross_entropy(Tensor(xp.asarray(logits)), xp.asarray(targets), "sum").item()
    assert np.isclose(mean, expected.mean(), rtol=1e-12, atol=1e-14)
    assert np.isclose(total, expected.sum(), rtol=1e-12, atol=1e-14)


def test_cross_entropy_is_stable_for_huge_logits(xp):
    logits = xp.asarray([[1000.0, -1000.0, 0.0], [0.0, 800.0, 800.0]])
    losses = cross_entropy(Tensor(logits), [0, 1], "none").numpy()
    assert np.allclose(losses, [0.0, np.log(2.0)], atol=1e-12)


@FIXTURE_SETTINGS
@given(problem=classification(max_value=5.0), seed=st.integers(0, 2**16))
def test_cross_entropy_gradient_passes_the_dot_product_check(xp, problem, seed):
    logits, targets = problem
    check_grads(lambda y: cross_entropy(y, xp.asarray(targets)), [xp.asarray(logits)], seed=seed)


@FIXTURE_SETTINGS
@given(problem=classification())
def test_robust_loss_of_exact_differences_is_the_cross_entropy(xp, problem):
    """Upper bounds equal to the true y_j − y_t (zero-width margins) give back L_CE."""
    logits, targets = problem
    differences = np.stack([np.delete(row - row[t], t) for row, t in zip(logits, targets,
                                                                          strict=True)])
    robust = robust_cross_entropy(Tensor(xp.asarray(differences)), "none").numpy()
    assert np.allclose(robust, naive_cross_entropy(logits, targets), rtol=1e-12, atol=1e-14)


def test_robust_loss_of_zero_margins_is_log_of_the_class_count(xp):
    margins = Tensor(xp.zeros((4, 9)))
    assert np.allclose(robust_cross_entropy(margins, "none").numpy(), np.log(10.0), rtol=1e-15)


def test_robust_loss_grows_with_the_margin_bounds(xp):
    low = robust_cross_entropy(Tensor(xp.asarray([[-1.0, -2.0]]))).item()
    high = robust_cross_entropy(Tensor(xp.asarray([[-1.0, 0.5]]))).item()
    assert low < high


def test_population_logits_give_one_loss_per_member(xp):
    rng = np.random.default_rng(0)
    logits, targets = rng.standard_normal((3, 4, 5)), rng.integers(0, 5, 4)
    losses = cross_entropy(Tensor(xp.asarray(logits)), xp.asarray(targets)).numpy()
    assert losses.shape == (3,)
    for member in range(3):
        assert np.isclose(losses[member], naive_cross_entropy(logits[member], targets).mean(),
                          rtol=1e-12)
    margins = rng.standard_normal((3, 4, 4))
    robust = robust_cross_entropy(Tensor(xp.asarray(margins)), "none").numpy()
    for member in range(3):
        single = robust_cross_entropy(Tensor(xp.asarray(margins[member])), "none").numpy()
        assert np.allclose(robust[member], single, rtol=1e-14)


def test_unknown_reduction_is_an_error(xp):
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(Tensor(xp.zeros((1, 2))), [0], "median")


def test_accuracy_counts_arg_max_hits(xp):
    logits = xp.asarray([[0.1, 0.9], [2.0, -1.0], [0.0, 3.0]])
    assert accuracy(logits, xp.asarray([1, 0, 0])) == pytest.approx(2 / 3)
