"""Forward values of the primitives against NumPy, and their documented subgradient choices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nobound.autodiff import Tensor, ops

FIXTURE_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow])
FINITE = st.floats(-50, 50, allow_nan=False, allow_subnormal=False)


def leaf(xp, values) -> Tensor:
    return Tensor(xp.asarray(values, dtype=xp.float64), requires_grad=True)


@FIXTURE_SETTINGS
@given(x=hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=4), elements=FINITE))
def test_unary_primitives_match_numpy(xp, x):
    t = Tensor(xp.asarray(x))
    pairs = [(ops.relu(t), np.maximum(x, 0)), (ops.abs(t), np.abs(x)), (ops.neg(t), -x),
             (ops.square(t), x * x), (ops.positive_part(t), np.maximum(x, 0)),
             (ops.negative_part(t), np.minimum(x, 0)), (ops.clamp(t, -1.0, 2.0),
                                                        np.clip(x, -1.0, 2.0))]
    for result, expected in pairs:
        assert np.array_equal(result.numpy(), expected)


@FIXTURE_SETTINGS
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                    elements=FINITE), data=st.data())
def test_reductions_match_numpy(xp, x, data):
    axis = data.draw(st.sampled_from([None, 0, -1, tuple(range(x.ndim))]))
    keepdims = data.draw(st.booleans())
    t = Tensor(xp.asarray(x))
    for name in ("sum", "mean", "max"):
        result = getattr(ops, name)(t, axis, keepdims).numpy()
        expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
        assert result.shape == np.shape(expected)
        assert np.allclose(result, expected, rtol=1e-12, atol=1e-12)


def test_logsumexp_is_stable_for_large_inputs(xp):
    x = Tensor(xp.asarray([[1000.0, 1000.0], [-1000.0, -1000.0 + np.log(3.0)]]))
    result = ops.logsumexp(x, axis=-1).numpy()
    assert np.allclose(result, [1000.0 + np.log(2.0), -1000.0 + np.log(4.0)], rtol=1e-15)


def test_max_splits_the_gradient_evenly_among_ties(xp):
    x = leaf(xp, [[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])
    ops.max(x, axis=1).sum().backward()
    assert np.array_equal(np.asarray(x.grad.tolist()), [[0, 0.5, 0.5], [0.5, 0, 0.5]])


def test_kink_subgradients_are_zero_at_zero(xp):
    x = leaf(xp, [0.0, 0.0])
    (ops.relu(x) + ops.abs(x) + ops.negative_part(x)).sum().backward()
    assert np.array_equal(np.asarray(x.grad.tolist()), [0.0, 0.0])


def test_minimum_and_maximum_send_ties_to_the_first_operand(xp):
    x, y = leaf(xp, [1.0]), leaf(xp, [1.0])
    (ops.maximum(x, y) + ops.minimum(x, y)).sum().backward()
    assert float(x.grad[0]) == 2.0 and float(y.grad[0]) == 0.0


def test_getitem_with_repeated_indices_scatter_adds(xp):
    x = leaf(xp, [10.0, 20.0, 30.0])
    y = ops.getitem(x, xp.asarray([0, 2, 0, 0]))
    assert y.numpy().tolist() == [10.0, 30.0, 10.0, 10.0]
    y.backward(xp.asarray([1.0, 2.0, 3.0, 4.0]))
    assert x.grad.tolist() == [8.0, 0.0, 2.0]


def test_getitem_accepts_tensor_indices_and_masks(xp):
    x = leaf(xp, [[1.0, 2.0], [3.0, 4.0]])
    assert ops.getitem(x, Tensor(xp.asarray([1, 1]))).numpy().tolist() == [[3, 4], [3, 4]]
    mask = xp.asarray([[True, False], [True, True]])
    ops.getitem(x, mask).sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_gather_picks_along_an_axis_and_scatters_back(xp):
    logits = leaf(xp, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    picked = ops.gather(logits, xp.asarray([[2, 2], [0, 1]]), axis=1)
    assert picked.numpy().tolist() == [[2.0, 2.0], [3.0, 4.0]]
    picked.sum().backward()
    assert logits.grad.tolist() == [[0.0, 0.0, 2.0], [1.0, 1.0, 0.0]]


def test_gather_broadcasts_like_take_along_axis(xp):
    x = leaf(xp, [[1.0, 2.0, 3.0]])  # (1, 3) against indices (2, 1)
    picked = ops.gather(x, xp.asarray([[2], [2]]), axis=1)
    assert picked.numpy().tolist() == [[3.0], [3.0]]
    picked.sum().backward()
    assert x.grad.tolist() == [[0.0, 0.0, 2.0]]


def test_shape_primitives_match_numpy(xp):
    x = np.arange(24.0).reshape(2, 3, 4)
    t = Tensor(xp.asarray(x))
    assert np.array_equal(ops.flatten(t).numpy(), x.reshape(2, 12))
    assert np.array_equal(ops.flatten(t, 0).numpy(), x.reshape(24))
    assert np.array_equal(ops.transpose(t, (2, 0, 1)).numpy(), x.transpose(2, 0, 1))
    assert np.array_equal(ops.swapaxes(t, 0, -1).numpy(), np.swapaxes(x, 0, -1))
    assert np.array_equal(ops.stack([t, t], axis=-1).numpy(), np.stack([x, x], axis=-1))
    assert np.array_equal(ops.concatenate([t, t], axis=1).numpy(), np.concatenate([x, x], 1))
    assert np.array_equal(ops.pad(t, [(0, 0), (1, 0), (0, 2)]).numpy(),
                          np.pad(x, [(0, 0), (1, 0), (0, 2)]))
    assert np.array_equal(ops.broadcast_to(t, (5, 2, 3, 4)).numpy(),
                          np.broadcast_to(x, (5, 2, 3, 4)))


def test_batch_statistics_are_the_mean_and_biased_variance(xp):
    x = np.random.default_rng(0).standard_normal((5, 3, 2, 2))
    mean, var = ops.batch_statistics(Tensor(xp.asarray(x)), (0, 2, 3))
    assert np.allclose(mean.numpy(), x.mean(axis=(0, 2, 3), keepdims=True), rtol=1e-14)
    assert np.allclose(var.numpy(), x.var(axis=(0, 2, 3), keepdims=True), rtol=1e-13)


def test_where_accepts_a_tensor_condition_and_scalars(xp):
    x = leaf(xp, [1.0, 2.0, 3.0])
    condition = Tensor(xp.asarray([True, False, True]))
    y = ops.where(condition, x, 0.0)
    assert y.numpy().tolist() == [1.0, 0.0, 3.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 1.0]


def test_einsum_matches_numpy_and_rejects_implicit_forms(xp):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    result = ops.einsum("ij,jk->ik", Tensor(xp.asarray(a)), Tensor(xp.asarray(b)))
    assert np.allclose(result.numpy(), a @ b, rtol=1e-13)
    square = np.ones((3, 3))
    for bad, operands in (("ij,jk", (a, b)), ("...j,jk->...k", (a, b)), ("ii->i", (square,)),
                          ("ij,jk->ik", (a,)), ("ijk,jk->i", (a, b))):
        with pytest.raises(ValueError):
            ops.einsum(bad, *(Tensor(xp.asarray(o)) for o in operands))


def test_matmul_rejects_vectors(xp):
    with pytest.raises(ValueError, match="2 dims"):
        ops.matmul(Tensor(xp.ones(3)), Tensor(xp.ones((3, 2))))
