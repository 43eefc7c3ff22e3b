"""MaxPool2d, Sigmoid and Tanh: forward against plain references, VJPs by the dot-product
test (away from ties and kinks), population axes kept."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff.gradcheck import check_grads
from nobound.autodiff.tensor import Tensor
from nobound.nn import MaxPool2d, Sigmoid, Tanh


def reference_max_pool(x: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)], constant_values=-np.inf)
    out_h = (padded.shape[-2] - k) // s + 1
    out_w = (padded.shape[-1] - k) // s + 1
    out = np.empty(x.shape[:-2] + (out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            out[..., i, j] = padded[..., i * s:i * s + k, j * s:j * s + k].max(axis=(-2, -1))
    return out


@pytest.mark.parametrize("k, s, p, size", [(2, 2, 0, 6), (3, 2, 1, 7), (4, 4, 0, 27),
                                           (3, 1, 0, 5), (2, 3, 1, 8)])
def test_max_pool_matches_the_loop_and_its_gradient_checks(k, s, p, size) -> None:
    rng = np.random.default_rng(k * 10 + s)
    x = rng.normal(size=(2, 3, size, size))
    layer = MaxPool2d(k, s, p)
    np.testing.assert_array_equal(layer(x).data, reference_max_pool(x, k, s, p))
    assert layer(x).shape[1:] == layer.output_shape((3, size, size))
    check_grads(lambda t: layer(t), [x])         # distinct values: no ties


def test_max_pool_gradient_goes_to_one_winner_per_window() -> None:
    x = Tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    MaxPool2d(2)(x).sum().backward()
    assert x.grad.sum() == 4 and set(np.unique(x.grad)) == {0.0, 1.0}


def test_max_pool_keeps_a_population_axis() -> None:
    x = np.random.default_rng(0).normal(size=(3, 2, 1, 4, 4))
    out = MaxPool2d(2)(x).data
    assert out.shape == (3, 2, 1, 2, 2)
    np.testing.assert_array_equal(out[1], reference_max_pool(x[1], 2, 2, 0))


def test_sigmoid_and_tanh_values_extremes_and_gradients() -> None:
    x = np.array([-800.0, -30.0, -1.0, 0.0, 0.5, 30.0, 800.0])
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(Sigmoid()(x).data, 1 / (1 + np.exp(-x)), rtol=1e-15)
    assert np.all(np.isfinite(Sigmoid()(x).data))
    np.testing.assert_allclose(Tanh()(x).data, np.tanh(x), rtol=1e-15)
    z = np.random.default_rng(1).normal(size=(4, 5)) * 3
    check_grads(lambda t: Sigmoid()(t), [z])
    check_grads(lambda t: Tanh()(t), [z])
