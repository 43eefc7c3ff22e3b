"""conv2d against the definition, written as a direct loop over output pixels.

y[b, o, i, j] = Σ_{c,p,q} W[o, c, p, q] · x_pad[b, c, s·i + p, s·j + q]
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nobound.autodiff import Tensor, ops


def naive_conv2d(x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    kernel_h, kernel_w = w.shape[-2:]
    out_h = (x.shape[2] + 2 * padding - kernel_h) // stride + 1
    out_w = (x.shape[3] + 2 * padding - kernel_w) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, :, stride * i:stride * i + kernel_h, stride * j:stride * j + kernel_w]
            out[:, :, i, j] = np.einsum("bcpq,ocpq->bo", patch, w)
    return out


@st.composite
def conv_problems(draw):
    kernel = draw(st.integers(1, 5))
    stride, padding = draw(st.sampled_from([1, 2])), draw(st.sampled_from([0, 1, 2]))
    smallest = max(1, kernel - 2 * padding)
    height, width = draw(st.integers(smallest, 9)), draw(st.integers(smallest, 9))
    batch, channels, out_channels = (draw(st.integers(1, 3)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((batch, channels, height, width))
    w = rng.standard_normal((out_channels, channels, kernel, kernel))
    return x, w, stride, padding


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(problem=conv_problems())
def test_conv2d_matches_the_direct_loop(xp, problem):
    x, w, stride, padding = problem
    result = ops.conv2d(Tensor(xp.asarray(x)), Tensor(xp.asarray(w)), stride, padding).numpy()
    expected = naive_conv2d(x, w, stride, padding)
    assert result.shape == expected.shape
    assert np.allclose(result, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("height, width, kernel, stride, padding", [
    (7, 6, 4, 2, 1),   # (7 + 2 - 4) % 2 = 1: the last input row is never read
    (8, 5, 5, 2, 0),   # (5 - 5) % 2 = 0 but (8 - 5) % 2 = 1
    (5, 9, 3, 2, 2),   # padding larger than needed for 'same'
    (4, 4, 5, 1, 2),   # kernel larger than the unpadded input
    (6, 7, 1, 2, 0),   # 1×1 kernel with stride
])
def test_conv2d_matches_the_direct_loop_on_uneven_geometries(xp, height, width, kernel, stride,
                                                             padding):
    rng = np.random.default_rng(height * 100 + width)
    x, w = rng.standard_normal((2, 3, height, width)), rng.standard_normal((4, 3, kernel, kernel))
    result = ops.conv2d(Tensor(xp.asarray(x)), Tensor(xp.asarray(w)), stride, padding).numpy()
    assert np.allclose(result, naive_conv2d(x, w, stride, padding), rtol=1e-12, atol=1e-12)
    assert result.shape[-2:] == (ops.output_size(height, kernel, stride, padding),
                                 ops.output_size(width, kernel, stride, padding))


def test_conv2d_with_population_weights_is_one_conv_per_member(xp):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 4, 2, 3, 3))
    shared, per_member = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 2, 6, 5))
    out_shared = ops.conv2d(Tensor(xp.asarray(shared)), Tensor(xp.asarray(w)), 2, 1).numpy()
    out_members = ops.conv2d(Tensor(xp.asarray(per_member)), Tensor(xp.asarray(w)), 2, 1).numpy()
    for p in range(3):
        assert np.allclose(out_shared[p], naive_conv2d(shared, w[p], 2, 1), rtol=1e-12)
        assert np.allclose(out_members[p], naive_conv2d(per_member[p], w[p], 2, 1), rtol=1e-12)


def test_conv2d_rejects_inconsistent_shapes(xp):
    x, w = Tensor(xp.ones((1, 2, 5, 5))), Tensor(xp.ones((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="channels"):
        ops.conv2d(Tensor(xp.ones((1, 4, 5, 5))), w)
    with pytest.raises(ValueError, match="batch axis"):
        ops.conv2d(Tensor(xp.ones((2, 5, 5))), w)
    with pytest.raises(ValueError, match="does not fit"):
        ops.conv2d(Tensor(xp.ones((1, 2, 2, 2))), w)
    with pytest.raises(ValueError, match="population"):
        ops.conv2d(Tensor(xp.ones((4, 1, 2, 5, 5))), Tensor(xp.ones((3, 3, 2, 3, 3))))
    with pytest.raises(ValueError, match="weight"):
        ops.conv2d(x, Tensor(xp.ones((3, 2, 3))))


def test_conv_transpose2d_rejects_an_output_of_the_wrong_geometry(xp):
    w = Tensor(xp.ones((2, 1, 3, 3)))
    with pytest.raises(ValueError, match="Ho, Wo"):  # (4, 3) has the size of the right (3, 4)
        ops.conv_transpose2d(Tensor(xp.ones((1, 2, 4, 3))), w, (5, 6))
    with pytest.raises(ValueError, match="population"):
        ops.conv_transpose2d(Tensor(xp.ones((1, 2, 3, 4))), Tensor(xp.ones((2, 2, 1, 3, 3))),
                             (5, 6))
