"""Exact adjoint identities ⟨g, A x⟩ = ⟨Aᵀ g, x⟩ for the engine's linear maps.

Bound back-substitution walks these maps backwards with their transposes, so a transpose
that is only approximately right would make every relaxation unsound; no step size is
involved here, the identity must hold to rounding.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nobound.autodiff import Tensor, ops
from nobound.autodiff.gradcheck import check_adjoint
from nobound.nn import Linear


def assert_adjoint(*args, **kwargs):
    """check_adjoint raises on a mismatch; the explicit assert states what is checked."""
    result = check_adjoint(*args, **kwargs)
    assert abs(result.forward_side - result.adjoint_side) <= result.tolerance


FIXTURE_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow])


@st.composite
def conv_settings(draw):
    kernel, stride, padding = draw(st.integers(1, 4)), draw(st.integers(1, 2)), \
        draw(st.integers(0, 2))
    smallest = max(1, kernel - 2 * padding)
    hw = (draw(st.integers(smallest, 8)), draw(st.integers(smallest, 8)))
    channels, out_channels, batch = (draw(st.integers(1, 3)) for _ in range(3))
    return dict(kernel=kernel, stride=stride, padding=padding, hw=hw, channels=channels,
                out_channels=out_channels, batch=batch, seed=draw(st.integers(0, 2**16)))


def weight(xp, c: dict, population: int | None = None) -> Tensor:
    lead = () if population is None else (population,)
    shape = (*lead, c["out_channels"], c["channels"], c["kernel"], c["kernel"])
    return Tensor(xp.asarray(np.random.default_rng(c["seed"]).standard_normal(shape)))


@FIXTURE_SETTINGS
@given(features=st.tuples(st.integers(1, 6), st.integers(1, 6)), batch=st.integers(1, 4),
       population=st.sampled_from([None, 2]))
def test_linear_layer_transpose(xp, features, batch, population):
    """The Linear layer's linear part: x ↦ x Wᵀ; its adjoint from autodiff is g ↦ g W."""
    layer = Linear(*features, bias=False, dtype=np.float64)
    shape = (features[1], features[0]) if population is None else (population, features[1],
                                                                     features[0])
    w = Tensor(xp.asarray(np.random.default_rng(batch).standard_normal(shape)))
    assert_adjoint(lambda x: layer(x, {"weight": w}), (batch, features[0]), xp=xp)
    assert_adjoint(lambda x: layer(x, {"weight": w}), (batch, features[0]),
                  lambda g: ops.matmul(g, w).sum(axis=0) if population else ops.matmul(g, w),
                  xp=xp)


@FIXTURE_SETTINGS
@given(c=conv_settings())
def test_conv2d_in_its_input_is_transposed_by_conv_transpose2d(xp, c):
    w = weight(xp, c)
    assert_adjoint(lambda x: ops.conv2d(x, w, c["stride"], c["padding"]),
                  (c["batch"], c["channels"], *c["hw"]),
                  lambda g: ops.conv_transpose2d(g, w, c["hw"], c["stride"], c["padding"]),
                  xp=xp)


@FIXTURE_SETTINGS
@given(c=conv_settings(), shared=st.booleans())
def test_population_conv2d_in_its_input_is_transposed_by_conv_transpose2d(xp, c, shared):
    """Shared input: x ↦ (conv(x, W_p))_p, whose adjoint sums the members' transposes."""
    w = weight(xp, c, population=2)
    lead = (c["batch"],) if shared else (2, c["batch"])

    def transpose(g: Tensor) -> Tensor:
        back = ops.conv_transpose2d(g, w, c["hw"], c["stride"], c["padding"])
        return ops.sum(back, axis=0) if shared else back

    assert_adjoint(lambda x: ops.conv2d(x, w, c["stride"], c["padding"]),
                  (*lead, c["channels"], *c["hw"]), transpose, xp=xp)


@FIXTURE_SETTINGS
@given(c=conv_settings(), population=st.sampled_from([None, 2]))
def test_conv2d_in_its_weight(xp, c, population):
    """W ↦ conv2d(x, W) for fixed x; autodiff's weight VJP must be its transpose."""
    rng = np.random.default_rng(c["seed"] + 1)
    x = Tensor(xp.asarray(rng.standard_normal((c["batch"], c["channels"], *c["hw"]))))
    lead = () if population is None else (population,)
    shape = (*lead, c["out_channels"], c["channels"], c["kernel"], c["kernel"])
    assert_adjoint(lambda w: ops.conv2d(x, w, c["stride"], c["padding"]), shape, xp=xp)


@FIXTURE_SETTINGS
@given(c=conv_settings())
def test_conv_transpose2d_in_its_input_is_transposed_by_conv2d(xp, c):
    w = weight(xp, c)
    out_hw = tuple(ops.output_size(n, c["kernel"], c["stride"], c["padding"]) for n in c["hw"])
    assert_adjoint(lambda y: ops.conv_transpose2d(y, w, c["hw"], c["stride"], c["padding"]),
                  (c["batch"], c["out_channels"], *out_hw),
                  lambda g: ops.conv2d(g, w, c["stride"], c["padding"]), xp=xp)
    assert_adjoint(lambda y: ops.conv_transpose2d(y, w, c["hw"], c["stride"], c["padding"]),
                  (c["batch"], c["out_channels"], *out_hw), xp=xp)


@FIXTURE_SETTINGS
@given(shape=hnp.array_shapes(min_dims=2, max_dims=4, max_side=4), data=st.data())
def test_shape_maps_are_transposed_by_their_inverses(xp, shape, data):
    start = data.draw(st.integers(0, len(shape) - 1))
    axes = data.draw(st.permutations(range(len(shape))))
    inverse = tuple(np.argsort(axes))
    assert_adjoint(lambda x: ops.flatten(x, start), shape,
                  lambda g: ops.reshape(g, shape), xp=xp)
    assert_adjoint(lambda x: ops.reshape(x, (-1,)), shape, lambda g: ops.reshape(g, shape), xp=xp)
    assert_adjoint(lambda x: ops.transpose(x, axes), shape,
                  lambda g: ops.transpose(g, inverse), xp=xp)
    for linear_map in (lambda x: ops.flatten(x, start), lambda x: ops.transpose(x, axes)):
        assert_adjoint(linear_map, shape, xp=xp)
