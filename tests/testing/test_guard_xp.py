"""The CPU guard for CuPy refuses exactly what a GPU refuses, and computes what NumPy does."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.backend import get_array_module, random_stream, to_numpy
from nobound.testing import guard_xp as gx


def test_implicit_conversion_to_numpy_raises_as_on_cupy():
    array = gx.arange(6.0).reshape(2, 3)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(array)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.array([array])
    assert to_numpy(array).tolist() == [[0, 1, 2], [3, 4, 5]]  # the explicit way
    assert get_array_module(array) is gx


@pytest.mark.parametrize("mix", [
    lambda a, h: a + h, lambda a, h: h * a, lambda a, h: np.maximum(a, h),
    lambda a, h: gx.where(a > 0, a, h), lambda a, h: gx.concatenate([a, h]),
])
def test_mixing_with_host_arrays_raises(mix):
    with pytest.raises(TypeError, match="Unsupported type"):
        mix(gx.ones(3), np.ones(3))


def test_numpy_functions_dispatch_or_refuse():
    array = gx.asarray([1.0, -2.0, 3.0])
    assert get_array_module(np.exp(array)) is gx
    assert get_array_module(np.sum(array)) is gx  # reductions stay on the device, 0-d
    assert get_array_module(array.max()) is gx and array.max().shape == ()
    with pytest.raises(TypeError, match="not offered"):
        np.linalg.norm(array)


def test_only_cupys_argument_lists():
    with pytest.raises(TypeError):
        gx.indices((2, 3), sparse=True)  # CuPy has no `sparse`
    with pytest.raises(TypeError):
        gx.clip(gx.ones(2), min=0.0)  # CuPy has positional bounds only
    assert not hasattr(gx, "linalg")  # only what nobound uses


def test_scatter_add_sums_repeated_indices():
    target = gx.zeros(3)
    gx.add.at(target, gx.asarray([0, 0, 2]), gx.asarray([1.0, 2.0, 5.0]))
    assert to_numpy(target).tolist() == [3.0, 0.0, 5.0]


def test_random_numbers_differ_from_numpy_for_the_same_stream():
    host = random_stream(3, 1, name="noise").standard_normal(100)
    device = to_numpy(random_stream(3, 1, name="noise", xp=gx).standard_normal(100))
    again = to_numpy(random_stream(3, 1, name="noise", xp=gx).standard_normal(100))
    assert np.array_equal(device, again) and not np.allclose(host, device)


def test_results_equal_numpy_where_no_randomness_is_involved():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3))
    got = gx.einsum("ij,jk->ik", gx.asarray(a), gx.asarray(b), optimize=True)
    assert np.array_equal(to_numpy(got), np.einsum("ij,jk->ik", a, b, optimize=True))
    assert np.array_equal(to_numpy(gx.asarray(a) @ gx.asarray(b)), a @ b)
