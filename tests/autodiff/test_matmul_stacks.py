"""ops.matmul of a stack of matrices by one matrix runs as one product over all rows
(linalg._product): it must give what the array library's stacked matmul gives, value and
gradient, for every arrangement of leading axes."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff import Tensor, ops

SHAPES = [  # (a, b): b one matrix (leading axes of length 1) or a real stack
    ((2, 5, 3, 4), (4, 6)),
    ((1, 2, 5, 3, 4), (1, 1, 1, 4, 6)),
    ((3, 4), (1, 4, 6)),              # fewer axes in a: the library's broadcasting
    ((2, 5, 3, 4), (2, 1, 4, 6)),     # a stack of b: the library's loop
    ((1, 7, 4), (1, 4, 1)),           # a matrix-vector product
]


@pytest.mark.parametrize("a_shape, b_shape", SHAPES)
def test_matmul_by_one_matrix_equals_the_stacked_product(xp, a_shape, b_shape):
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal(a_shape))
    b = xp.asarray(rng.standard_normal(b_shape))
    x, y = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out = ops.matmul(x, y)
    expected = xp.matmul(a, b)
    assert out.shape == expected.shape
    np.testing.assert_allclose(np.asarray(_host(out.data)), _host(expected), rtol=1e-13,
                               atol=1e-13)
    g = xp.asarray(rng.standard_normal(expected.shape))
    ops.sum(out * Tensor(g)).backward()
    gx = xp.matmul(g, b.swapaxes(-1, -2))
    gx = gx.reshape((-1,) + a_shape).sum(axis=0) if gx.ndim > len(a_shape) else gx
    np.testing.assert_allclose(_host(x.grad), _host(gx).reshape(a_shape), rtol=1e-13,
                               atol=1e-13)


def test_a_transposed_stack_is_multiplied_as_its_values():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 2, 4, 5)).swapaxes(-1, -2)  # not contiguous
    b = rng.standard_normal((4, 2))
    np.testing.assert_array_equal(ops.matmul(Tensor(a), Tensor(b)).data, np.matmul(a, b))


def _host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)
