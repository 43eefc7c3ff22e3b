"""A leading population axis P on every parameter equals P separate networks.

For each layer and for whole zoo models, one call with parameters of shape (P, …) — on a
shared input (B, …) or a per-member input (P, B, …) — must give the outputs *and* the
parameter and input gradients of P separate calls, member by member.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nobound.autodiff import Tensor
from nobound.nn import BatchNorm, Conv2d, Linear, Module, build_model, conv_net, fc_net

POPULATION = 3
FIXTURE_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow], max_examples=10)


def close(a, b) -> bool:
    return bool(np.allclose(np.asarray(a.tolist()), np.asarray(b.tolist()), rtol=1e-10,
                            atol=1e-12))


def perturbed_population(model: Module, xp, seed: int) -> dict[str, np.ndarray]:
    """P distinct parameter vectors around random base values."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((POPULATION, *p.shape)) for name, p in
            model.named_parameters()}


def assert_population_equals_separate(xp, model: Module, population: dict, x: np.ndarray,
                                      shared: bool) -> None:
    rng = np.random.default_rng(1)
    params = {k: Tensor(xp.asarray(v), requires_grad=True) for k, v in population.items()}
    x_all = Tensor(xp.asarray(x), requires_grad=True)
    out = model(x_all, params)
    upstream = xp.asarray(rng.standard_normal(out.shape))
    assert out.shape[0] == POPULATION
    (out * upstream).sum().backward()
    input_grad_sum = xp.zeros(x.shape[-4:] if shared else x.shape[1:])
    for member in range(POPULATION):
        member_params = {k: Tensor(xp.asarray(v[member]), requires_grad=True)
                         for k, v in population.items()}
        x_member = Tensor(xp.asarray(x if shared else x[member]), requires_grad=True)
        out_member = model(x_member, member_params)
        assert close(out.data[member], out_member.data)
        (out_member * upstream[member]).sum().backward()
        for name, tensor in member_params.items():
            assert close(params[name].grad[member], tensor.grad), name
        if shared:
            input_grad_sum = input_grad_sum + x_member.grad
        else:
            assert close(x_all.grad[member], x_member.grad)
    if shared:
        assert close(x_all.grad, input_grad_sum)


def inputs(shape: tuple[int, ...], shared: bool, seed: int = 2) -> np.ndarray:
    lead = (2,) if shared else (POPULATION, 2)
    return np.random.default_rng(seed).standard_normal((*lead, *shape))


@FIXTURE_SETTINGS
@given(features=st.tuples(st.integers(1, 5), st.integers(1, 5)), shared=st.booleans(),
       bias=st.booleans())
def test_linear(xp, features, shared, bias):
    layer = Linear(*features, bias=bias, dtype=np.float64)
    assert_population_equals_separate(xp, layer, perturbed_population(layer, xp, 0),
                                      inputs((features[0],), shared), shared)


@FIXTURE_SETTINGS
@given(kernel=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1),
       shared=st.booleans())
def test_conv2d(xp, kernel, stride, padding, shared):
    layer = Conv2d(2, 3, kernel, stride, padding, dtype=np.float64)
    assert_population_equals_separate(xp, layer, perturbed_population(layer, xp, 0),
                                      inputs((2, 5, 4), shared), shared)


@pytest.mark.parametrize("spatial", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shared", [True, False])
def test_batchnorm(xp, spatial, training, shared):
    """Train mode: each member normalises with its own batch's statistics (paper App. F)."""
    layer = BatchNorm(3, spatial=spatial, dtype=np.float64)
    layer.running_mean = np.array([0.5, -1.0, 2.0])
    layer.running_var = np.array([0.5, 2.0, 1.5])
    layer.train(training)
    x = inputs((3, 4, 2) if spatial else (3,), shared)
    population = perturbed_population(layer, xp, 0)
    population["weight"] = np.abs(population["weight"]) + 0.5
    assert_population_equals_separate(xp, layer, population, x, shared)


ZOO = {
    "cnn3_tiny": ((1, 12, 12), lambda: build_model("cnn3_tiny", (1, 12, 12), 5,
                                                   dtype=np.float64)),
    "fc": ((1, 4, 4), lambda: fc_net((1, 4, 4), 3, (6, 5), dtype=np.float64)),
    "conv-bn": ((2, 6, 6), lambda: conv_net((2, 6, 6), 4, [(2, 3, 2, 1)], [5], batchnorm=True,
                                            dtype=np.float64)),
}


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shared", [True, False])
def test_zoo_models(xp, name, training, shared):
    input_shape, build = ZOO[name]
    model = build().train(training)
    population = perturbed_population(model, xp, 0)
    for key in population:  # BatchNorm scales stay positive, as trained ones are
        index, local = key.split(".")
        if isinstance(model.layers[int(index)], BatchNorm) and local == "weight":
            population[key] = np.abs(population[key]) + 0.5
    assert_population_equals_separate(xp, model, population, inputs(input_shape, shared),
                                      shared)
