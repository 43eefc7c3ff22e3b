"""Tensor.backward semantics: accumulation, broadcasting, no_grad, deep graphs, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nobound.autodiff import Tensor, is_grad_enabled, no_grad, ops, zero_grad

FIXTURE_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow])


def leaf(xp, values) -> Tensor:
    return Tensor(xp.asarray(values, dtype=xp.float64), requires_grad=True)


def test_gradients_are_summed_when_a_value_feeds_several_ops(xp):
    x = leaf(xp, [0.5, -1.0, 2.0])
    a, b = xp.asarray([1.0, 2.0, 3.0]), xp.asarray([-4.0, 5.0, 0.25])
    (x * a + x * b + ops.exp(x) + x * x).sum().backward()
    expected = a + b + xp.exp(x.data) + 2 * x.data
    assert xp.allclose(x.grad, expected, rtol=1e-14, atol=0)


def test_diamond_graphs_are_walked_once_per_node(xp):
    """y ← y + y fifty times: 2⁵⁰ paths, 51 nodes; the gradient is exactly 2⁵⁰."""
    x = leaf(xp, [1.0])
    y = x
    for _ in range(50):
        y = y + y
    y.sum().backward()
    assert float(x.grad[0]) == 2.0 ** 50


def test_backward_twice_accumulates_until_zero_grad(xp):
    x = leaf(xp, [1.0, 2.0])
    for _ in range(2):
        (x * 3.0).sum().backward()
    assert xp.array_equal(x.grad, xp.asarray([6.0, 6.0]))
    zero_grad([x])
    assert x.grad is None


@FIXTURE_SETTINGS
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=3))
def test_broadcast_gradients_sum_over_the_broadcast_axes(xp, shapes):
    rng = np.random.default_rng(0)
    x_shape, y_shape = shapes.input_shapes
    x, y = leaf(xp, rng.standard_normal(x_shape)), leaf(xp, rng.standard_normal(y_shape))
    upstream = xp.asarray(rng.standard_normal(shapes.result_shape))
    (x * y).backward(upstream)
    full_x = xp.broadcast_to(x.data, shapes.result_shape)
    full_y = xp.broadcast_to(y.data, shapes.result_shape)
    for tensor, partial in ((x, upstream * full_y), (y, upstream * full_x)):
        extra = len(shapes.result_shape) - tensor.ndim
        summed = partial.sum(axis=tuple(range(extra)))
        axes = tuple(i for i, n in enumerate(tensor.shape) if n == 1)
        expected = summed.sum(axis=axes, keepdims=True) if axes else summed
        assert tensor.grad.shape == tensor.shape
        assert xp.allclose(tensor.grad, expected, rtol=1e-12, atol=1e-12)


def test_population_weight_gradient_sums_over_nothing_but_the_batch(xp):
    """(P, out, in) weights against a shared (B, in) input: each member's gradient is its own."""
    rng = np.random.default_rng(1)
    w = leaf(xp, rng.standard_normal((3, 2, 4)))
    x = xp.asarray(rng.standard_normal((5, 4)))
    upstream = xp.asarray(rng.standard_normal((3, 5, 2)))
    ops.matmul(Tensor(x), ops.swapaxes(w, -1, -2)).backward(upstream)
    expected = xp.einsum("pbo,bi->poi", upstream, x)
    assert xp.allclose(w.grad, expected, rtol=1e-12, atol=1e-12)


def test_no_grad_records_nothing(xp):
    x = leaf(xp, [1.0, 2.0])
    with no_grad():
        assert not is_grad_enabled()
        y = ops.exp(x * 2.0).sum()
    assert is_grad_enabled()
    assert not y.requires_grad and y.parents == () and y.vjp is None
    y.backward()
    assert x.grad is None


def test_no_grad_restores_recording_after_an_exception(xp):
    with pytest.raises(RuntimeError), no_grad():
        raise RuntimeError("inside")
    assert is_grad_enabled()
    x = leaf(xp, [1.0])
    assert (x * 2.0).requires_grad


def test_constants_record_no_graph(xp):
    y = Tensor(xp.ones(3)) * 2.0 + 1.0
    assert not y.requires_grad and y.parents == ()


def test_intermediate_nodes_keep_no_gradient(xp):
    x = leaf(xp, [1.0])
    hidden = x * 2.0
    (hidden * 3.0).sum().backward()
    assert hidden.grad is None and float(x.grad[0]) == 6.0


def test_a_deep_chain_of_ten_thousand_ops_back_propagates(xp):
    x = leaf(xp, [1.0, -2.0])
    y = x
    for step in range(10_000):
        y = y * 1.0001 if step % 2 == 0 else y + 0.5
    y.sum().backward()
    assert xp.allclose(x.grad, 1.0001 ** 5000, rtol=1e-12, atol=0)
    del y  # freeing the chain must not recurse either


def test_backward_on_a_non_scalar_needs_a_gradient(xp):
    x = leaf(xp, [1.0, 2.0])
    y = x * 2.0
    with pytest.raises(ValueError, match="scalar"):
        y.backward()
    y.backward(xp.asarray([1.0, 10.0]))
    assert xp.array_equal(x.grad, xp.asarray([2.0, 20.0]))


def test_backward_rejects_a_gradient_of_the_wrong_shape(xp):
    x = leaf(xp, np.ones((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        (x * 2.0).backward(xp.ones((3, 2)))


def test_leaf_gradients_are_independent_writable_arrays(xp):
    """add's VJP hands the same array to both operands; the leaves must not share it."""
    x, y = leaf(xp, [1.0, 2.0]), leaf(xp, [3.0, 4.0])
    upstream = xp.asarray([1.0, 1.0])
    (x + y).backward(upstream)
    x.grad *= 2.0
    assert xp.array_equal(y.grad, xp.asarray([1.0, 1.0]))
    assert xp.array_equal(upstream, xp.asarray([1.0, 1.0]))
    z = leaf(xp, [1.0, 2.0])
    z.sum().backward()  # sum's VJP is a read-only broadcast view
    z.grad += 1.0
    assert xp.array_equal(z.grad, xp.asarray([2.0, 2.0]))


def test_leaf_gradient_has_the_leaf_dtype(xp):
    x = Tensor(xp.ones(3, dtype=xp.float32), requires_grad=True)
    (x * xp.asarray([1.0, 2.0, 3.0])).sum().backward()  # float64 constant promotes the output
    assert x.grad.dtype == xp.float32


@pytest.mark.parametrize("scalar", [2, 2.0, np.int64(2), np.float64(2.0), np.float32(2.0)])
def test_scalars_do_not_promote_float32_tensors(xp, scalar):
    x = Tensor(xp.ones(3, dtype=xp.float32))
    for result in (x * scalar, scalar * x, x + scalar, scalar - x, x / scalar, scalar / x):
        assert result.dtype == xp.float32


def test_arrays_on_the_left_defer_to_the_tensor(xp):
    x = leaf(xp, [1.0, 2.0])
    y = xp.asarray([3.0, 4.0]) * x
    assert isinstance(y, Tensor) and y.requires_grad
    y.sum().backward()
    assert xp.array_equal(x.grad, xp.asarray([3.0, 4.0]))


def test_integer_leaves_that_need_gradients_become_floating(xp):
    assert Tensor(xp.arange(3), requires_grad=True).dtype.kind == "f"
    assert Tensor(xp.arange(3)).dtype.kind == "i"


def test_item_and_detach(xp):
    x = leaf(xp, [[2.5]])
    assert x.item() == 2.5
    with pytest.raises(ValueError, match="single element"):
        leaf(xp, [1.0, 2.0]).item()
    d = x.detach()
    assert not d.requires_grad and d.parents == ()


def test_power_operator_supports_square_and_square_root_only(xp):
    x = leaf(xp, [4.0])
    assert float((x ** 2).data[0]) == 16.0 and float((x ** 0.5).data[0]) == 2.0
    with pytest.raises(NotImplementedError):
        _ = x ** 3


@FIXTURE_SETTINGS
@given(st.integers(1, 4))
def test_sum_of_a_scalar_chain_gradient_counts_uses(xp, uses):
    x = leaf(xp, [0.3])
    total = x
    for _ in range(uses - 1):
        total = total + x
    total.sum().backward()
    assert float(x.grad[0]) == uses
