"""Weight initialisations: Kaiming uniform (PyTorch's default) and the IBP initialisation.

Kaiming uniform, as ``torch.nn.Linear``/``Conv2d`` initialise themselves (He et al., 2015,
with a = √5): W ~ U(−1/√fan_in, 1/√fan_in) and b ~ U(−1/√fan_in, 1/√fan_in).

IBP initialisation (Shi et al., 2021, "Fast certified robust training with short warmup"):
W ~ N(0, σ²) with σ = √(2π) / fan_in for every Linear/Conv2d *except the last*. For a ReLU
layer with random inputs the expected interval width then stays constant from layer to
layer instead of exploding, which makes early IBP/CROWN training stable. Exactly as their
``manual_init.py`` (``ibp_init``): the loop runs over all weights but the last, and nothing
else is touched, so every bias and the whole output layer keep the framework's default —
PyTorch's Kaiming uniform, which is what we draw for them. The paper uses it for certified
training on MNIST and CIFAR-10 (App. F.1) and Kaiming uniform for PGD training.
"""

from __future__ import annotations

import math

import numpy as np

from nobound.autodiff.tensor import Tensor
from nobound.backend import random_stream
from nobound.nn.layers import Conv2d, Linear
from nobound.nn.module import Module


def fan_in(weight_shape: tuple[int, ...]) -> int:
    return int(np.prod(weight_shape[1:]))


def _fill(parameter: Tensor, values: np.ndarray) -> None:
    """Overwrite in place; values are drawn on the host so CPU and GPU models agree."""
    parameter.data[...] = parameter.xp.asarray(values, dtype=parameter.dtype)


def _affine_layers(model: Module) -> list[Module]:
    layers = getattr(model, "layers", [model])
    return [layer for layer in layers if isinstance(layer, Linear | Conv2d)]


def kaiming_uniform(model: Module, seed: int) -> Module:
    """Initialise every Linear/Conv2d as PyTorch does by default."""
    for index, layer in enumerate(_affine_layers(model)):
        rng = random_stream(seed, index, name="init-kaiming")
        bound = 1.0 / math.sqrt(fan_in(layer.weight.shape))
        _fill(layer.weight, rng.uniform(-bound, bound, layer.weight.shape))
        if layer.bias is not None:
            _fill(layer.bias, rng.uniform(-bound, bound, layer.bias.shape))
    return model


def ibp_init(model: Module, seed: int) -> Module:
    """Shi et al. (2021): the framework default everywhere (Kaiming uniform, weights and
    biases), then W ~ N(0, (√(2π)/fan_in)²) for every Linear/Conv2d weight but the last."""
    kaiming_uniform(model, seed)
    for index, layer in enumerate(_affine_layers(model)[:-1]):
        rng = random_stream(seed, index, name="init-ibp")
        std = math.sqrt(2 * math.pi) / fan_in(layer.weight.shape)
        _fill(layer.weight, rng.normal(0.0, std, layer.weight.shape))
    return model


INITIALISERS = {"kaiming": kaiming_uniform, "ibp": ibp_init}


def initialise(model: Module, scheme: str, seed: int) -> Module:
    if scheme not in INITIALISERS:
        raise ValueError(f"unknown initialisation {scheme!r}; choose from {sorted(INITIALISERS)}")
    return INITIALISERS[scheme](model, seed)
