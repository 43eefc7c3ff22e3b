"""Initialisation schemes: Kaiming uniform bounds, IBP init statistics, determinism by seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nobound.backend import device_of
from nobound.nn import BatchNorm, Conv2d, Linear, build_model, ibp_init, initialise
from nobound.nn.init import fan_in


def affine_layers(model):
    return [m for m in model.layers if isinstance(m, Conv2d | Linear)]


def test_fan_in_counts_inputs_per_output():
    assert fan_in((64, 3, 5, 5)) == 75 and fan_in((10, 392)) == 392


def test_kaiming_uniform_stays_within_and_fills_its_bounds():
    """PyTorch's default: W, b ~ U(−1/√fan_in, 1/√fan_in)."""
    model = initialise(build_model("cnn5", (1, 28, 28), 10), "kaiming", seed=0)
    for layer in affine_layers(model):
        bound = 1.0 / math.sqrt(fan_in(layer.weight.shape))
        weight, bias = layer.weight.numpy(), layer.bias.numpy()
        assert np.abs(weight).max() <= bound and np.abs(bias).max() <= bound
        assert np.abs(weight).max() > 0.9 * bound  # the whole range is used
        if weight.size >= 1000:  # uniform on [−a, a] has variance a²/3
            assert abs(weight.var() / (bound ** 2 / 3) - 1) < 0.1


def test_ibp_init_draws_gaussian_weights_for_all_but_the_last_layer():
    """Shi et al. (2021): W ~ N(0, (√(2π)/fan_in)²) for every weight but the last; biases and
    the output layer keep PyTorch's default (Kaiming uniform, exactly the kaiming draw)."""
    model = ibp_init(build_model("cnn5", (1, 28, 28), 10), seed=0)
    default = initialise(build_model("cnn5", (1, 28, 28), 10), "kaiming", seed=0)
    layers, default_layers = affine_layers(model), affine_layers(default)
    for layer in layers[:-1]:
        std = math.sqrt(2 * math.pi) / fan_in(layer.weight.shape)
        weight = layer.weight.numpy()
        tolerance = 6 / math.sqrt(2 * weight.size)  # 6 standard errors of a sample std
        assert abs(weight.std() / std - 1) < tolerance
        assert abs(weight.mean()) < 6 * std / math.sqrt(weight.size)
        # Gaussian, not uniform: the kurtosis of N is 3, of a uniform 1.8
        kurtosis = np.mean((weight - weight.mean()) ** 4) / weight.var() ** 2
        assert abs(kurtosis - 3) < 0.5
    for layer, reference in zip(layers, default_layers, strict=True):
        assert np.array_equal(layer.bias.numpy(), reference.bias.numpy())
        bound = 1.0 / math.sqrt(fan_in(layer.weight.shape))
        assert 0 < np.abs(layer.bias.numpy()).max() <= bound
    assert np.array_equal(layers[-1].weight.numpy(), default_layers[-1].weight.numpy())


@pytest.mark.parametrize("scheme", ["kaiming", "ibp"])
def test_initialisation_is_deterministic_by_seed(scheme):
    first = initialise(build_model("cnn3", (1, 28, 28), 10), scheme, seed=5).state_dict()
    again = initialise(build_model("cnn3", (1, 28, 28), 10), scheme, seed=5).state_dict()
    other = initialise(build_model("cnn3", (1, 28, 28), 10), scheme, seed=6).state_dict()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["0.weight"], other["0.weight"])


def test_layers_get_different_draws():
    model = initialise(build_model("cnn3", (1, 16, 16), 10), "ibp", seed=0)
    first, second = affine_layers(model)[:2]
    assert not np.allclose(first.weight.numpy().ravel()[:8], second.weight.numpy().ravel()[:8])


def test_initialisation_leaves_batchnorm_at_identity():
    model = initialise(build_model("cnn7", (3, 8, 8), 10), "ibp", seed=0)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            assert np.all(layer.weight.numpy() == 1) and np.all(layer.bias.numpy() == 0)


def test_unknown_scheme_is_an_error():
    with pytest.raises(ValueError, match="unknown initialisation"):
        initialise(build_model("cnn3"), "xavier", seed=0)


def test_initialisation_respects_the_parameter_dtype():
    model = initialise(build_model("cnn3", dtype=np.float64), "kaiming", seed=0)
    assert all(p.dtype == np.float64 for p in model.parameters())


@pytest.mark.parametrize("scheme", ["kaiming", "ibp"])
def test_initialisation_is_the_same_on_every_device(xp, scheme):
    """Values are drawn on the host, so a GPU model starts exactly where a CPU one does."""
    reference = initialise(build_model("cnn3"), scheme, seed=3).state_dict()
    model = build_model("cnn3")
    if xp is not np:
        model.to(device_of(xp))
    state = initialise(model, scheme, seed=3).state_dict()
    assert all(np.array_equal(np.asarray(state[k].tolist()), reference[k]) for k in reference)
