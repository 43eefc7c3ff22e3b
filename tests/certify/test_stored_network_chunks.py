"""The dense matrix of a convolution, built from unit inputs in chunks, is the same whatever
the chunk size, and is the convolution (on random inputs, float64)."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.certify import stored_network as stored
from nobound.certify.problem import float64_model
from nobound.nn import Conv2d, Flatten, Linear, ReLU, Sequential, initialise


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_conv_dense_matrix_in_chunks(chunk, monkeypatch) -> None:
    model = Sequential(Conv2d(2, 3, 3, stride=2, padding=1), ReLU(), Flatten(),
                       Linear(3 * 3 * 3, 2))
    initialise(model, "kaiming", seed=1)
    model = float64_model(model)
    reference = stored.stored_network(model, (2, 5, 5))
    monkeypatch.setattr(stored, "_BASIS_CHUNK", chunk)
    chunked = stored.stored_network(model, (2, 5, 5))
    for mine, theirs in zip(chunked.weights + chunked.biases,
                            reference.weights + reference.biases, strict=True):
        assert np.array_equal(mine, theirs)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 2, 5, 5))
    with no_grad():
        conv = model.layers[0](Tensor(x)).data.reshape(4, -1)
    dense = x.reshape(4, -1) @ chunked.weights[0].T + chunked.biases[0]
    assert np.allclose(dense, conv, rtol=1e-12, atol=1e-12)


def test_stored_arrays_are_copies_so_what_the_checker_derives_from_them_stays_true() -> None:
    """The checker derives |W|, CSR copies and "has a radius" once per stored array
    (rounding.stage_matrix, any_nonzero): the stored network must not share memory with
    the model, or a model trained on would leave those stale."""
    from nobound.certify.rounding import any_nonzero, stage_matrix

    first, second = Linear(3, 4, dtype=np.float64), Linear(4, 2, dtype=np.float64)
    model = Sequential(first, ReLU(), second)
    network = stored.stored_network(model, (3,))
    before = network.weights[0].copy()
    magnitude = stage_matrix(network.weights[0]).magnitude.copy()
    first.weight.data[...] += 1.0  # training goes on in place
    assert np.array_equal(network.weights[0], before)
    assert np.array_equal(stage_matrix(network.weights[0]).magnitude, magnitude)
    assert not any_nonzero(network.weight_radii[0])
    assert any_nonzero(np.array([0.0, 1e-300])) and not any_nonzero(np.zeros(3))
