"""The checkers themselves: they accept correct derivatives and reject wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.autodiff import Tensor, ops
from nobound.autodiff.gradcheck import KinkNearby, check_adjoint, check_grads


def scaled_vjp_square(x: Tensor, factor: float) -> Tensor:
    """x² with its VJP multiplied by ``factor`` (factor 1 is correct)."""
    return Tensor.from_op(x.data * x.data, (x,), lambda g: (factor * 2 * g * x.data,))


def test_check_grads_accepts_a_correct_vjp(xp):
    x = xp.linspace(-1.0, 2.0, 7)
    result = check_grads(lambda t: scaled_vjp_square(t, 1.0), [x])
    assert result.error <= result.tolerance
    assert abs(result.reverse) > 10 * result.tolerance  # the test is not vacuous


@pytest.mark.parametrize("factor", [0.0, 0.999, 2.0, -1.0])
def test_check_grads_rejects_a_wrong_vjp(xp, factor):
    x = xp.linspace(-1.0, 2.0, 7)
    with pytest.raises(AssertionError, match="dot-product test failed"):
        check_grads(lambda t: scaled_vjp_square(t, factor), [x])


def test_check_grads_calls_a_kink_within_the_step_inconclusive(xp):
    """|x − k| with k within the step of x: the difference quotients at h and h/2 disagree,
    whatever the VJP; with the kink far away the same function passes."""
    x = xp.linspace(-1.0, 2.0, 7)
    with pytest.raises(KinkNearby, match="a kink within the step"):
        check_grads(lambda t: ops.abs(t - (x + 3e-7)), [x])
    result = check_grads(lambda t: ops.abs(t - (x + 1e-3)), [x])
    assert result.error <= result.tolerance


def test_a_wrong_vjp_of_a_smooth_function_is_a_failure_not_a_kink(xp):
    x = xp.linspace(-1.0, 2.0, 7)
    with pytest.raises(AssertionError, match="dot-product test failed") as raised:
        check_grads(lambda t: scaled_vjp_square(t, 2.0), [x])
    assert not isinstance(raised.value, KinkNearby)


def test_check_grads_rejects_a_vjp_that_forgets_an_input(xp):
    def product_ignoring_y(x: Tensor, y: Tensor) -> Tensor:
        return Tensor.from_op(x.data * y.data, (x, y), lambda g: (g * y.data, None))

    with pytest.raises(AssertionError):
        check_grads(product_ignoring_y, [xp.ones(3) * 0.5, xp.arange(1.0, 4.0)])


def test_check_grads_rejects_a_gradient_of_the_wrong_shape(xp):
    def summed_vjp(x: Tensor) -> Tensor:
        return Tensor.from_op(x.data * 1.0, (x,), lambda g: (g.sum(axis=0),))

    with pytest.raises(AssertionError, match="shape"):
        check_grads(summed_vjp, [xp.ones((2, 3))])


def test_check_grads_requires_float64(xp):
    with pytest.raises(ValueError, match="float64"):
        check_grads(ops.exp, [xp.ones(3, dtype=xp.float32)])


def test_check_grads_is_deterministic_by_seed(xp):
    x = xp.linspace(0.5, 1.5, 5)
    first, again = (check_grads(ops.log, [x], seed=3) for _ in range(2))
    other = check_grads(ops.log, [x], seed=4)
    assert first == again
    assert other.reverse != first.reverse


def test_check_adjoint_accepts_a_matrix_and_its_transpose(xp):
    a = xp.asarray(np.random.default_rng(0).standard_normal((4, 3)))
    result = check_adjoint(lambda x: ops.matmul(x, a.T), (2, 3), xp=xp)
    explicit = check_adjoint(lambda x: ops.matmul(x, a.T), (2, 3), lambda g: ops.matmul(g, a),
                             xp=xp)
    assert result.error <= result.tolerance and explicit.error <= explicit.tolerance
    assert abs(result.forward_side) > 1e3 * result.tolerance


def test_check_adjoint_rejects_a_wrong_transpose(xp):
    a = xp.asarray(np.random.default_rng(0).standard_normal((3, 3)))
    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(lambda x: ops.matmul(x, a.T), (2, 3), lambda g: ops.matmul(g, a.T), xp=xp)


def test_check_adjoint_rejects_an_affine_map(xp):
    with pytest.raises(AssertionError, match="adjoint identity failed"):
        check_adjoint(lambda x: x * 2.0 + 1.0, (5,), xp=xp)


def test_check_adjoint_rejects_a_transpose_of_the_wrong_shape(xp):
    with pytest.raises(AssertionError, match="shape"):
        check_adjoint(lambda x: x * 2.0, (2, 3), lambda g: ops.reshape(g, (3, 2)), xp=xp)
