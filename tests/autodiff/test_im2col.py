"""im2col / col2im (the data movement inside conv2d) and the conv paths built on them.

* im2col matches its definition cols[g, (c,p,q), (n,i,j)] = x_pad[g, n, c, s·i+p, s·j+q],
  computed here by explicit loops;
* col2im is its exact adjoint, ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩;
* the optional Numba loops give the same arrays as the NumPy slicing path;
* conv2d with the columns unfolded in cache-sized blocks (large inputs, inference) gives
  the same output and gradients as the one-GEMM path, population axis included.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nobound.autodiff import Tensor, no_grad, ops
from nobound.autodiff.ops import _conv_products, _im2col

# (groups, images, channels, height, width, kernel, stride, padding)
SHAPES = [(1, 2, 1, 5, 6, 3, 1, 0), (1, 3, 2, 7, 7, 4, 2, 1), (2, 2, 3, 6, 5, 3, 2, 2),
          (3, 1, 2, 9, 8, 5, 3, 1), (1, 2, 2, 4, 4, 1, 1, 0), (2, 1, 1, 3, 3, 3, 1, 2)]


def numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make _im2col use its NumPy slicing path even when Numba is installed."""
    monkeypatch.setattr(_im2col, "_compiled", lambda: None)


def by_definition(images: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    groups, count, channels, height, width = images.shape
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1
    padded = np.pad(images, [(0, 0)] * 3 + [(padding, padding)] * 2)
    cols = np.zeros((groups, channels * kernel * kernel, count * out_h * out_w))
    for g, n, c, p, q, i, j in itertools.product(range(groups), range(count), range(channels),
                                                 range(kernel), range(kernel), range(out_h),
                                                 range(out_w)):
        cols[g, (c * kernel + p) * kernel + q, (n * out_h + i) * out_w + j] = \
            padded[g, n, c, stride * i + p, stride * j + q]
    return cols


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("compiled", [False, True])
def test_im2col_matches_its_definition(shape, compiled, monkeypatch):
    if not compiled:
        numpy_path(monkeypatch)
    elif not _im2col.uses_compiled_kernels(np.zeros(1)):
        pytest.skip("Numba is not installed")
    *image_shape, kernel, stride, padding = shape
    images = np.random.default_rng(0).standard_normal(image_shape)
    cols = _im2col.im2col(images, kernel, kernel, stride, padding)
    np.testing.assert_array_equal(cols, by_definition(images, kernel, stride, padding))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("compiled", [False, True])
def test_col2im_is_the_adjoint_of_im2col(shape, compiled, monkeypatch, xp):
    if not compiled:
        numpy_path(monkeypatch)
    elif xp is not np or not _im2col.uses_compiled_kernels(np.zeros(1)):
        pytest.skip("the Numba loops run on NumPy arrays with Numba installed")
    *image_shape, kernel, stride, padding = shape
    rng = np.random.default_rng(1)
    images = xp.asarray(rng.standard_normal(image_shape))
    cols_shape = _im2col.im2col(images, kernel, kernel, stride, padding).shape
    cols = xp.asarray(rng.standard_normal(cols_shape))
    forward = float((_im2col.im2col(images, kernel, kernel, stride, padding) * cols).sum())
    adjoint = float((images * _im2col.col2im(cols, tuple(image_shape), kernel, kernel, stride,
                                             padding)).sum())
    assert adjoint == pytest.approx(forward, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_numba_and_numpy_col2im_agree(shape, monkeypatch):
    if not _im2col.uses_compiled_kernels(np.zeros(1)):
        pytest.skip("Numba is not installed")
    *image_shape, kernel, stride, padding = shape
    images = np.zeros(image_shape)
    cols = np.random.default_rng(2).standard_normal(
        _im2col.im2col(images, kernel, kernel, stride, padding).shape)
    compiled = _im2col.col2im(cols, tuple(image_shape), kernel, kernel, stride, padding)
    numpy_path(monkeypatch)
    sliced = _im2col.col2im(cols, tuple(image_shape), kernel, kernel, stride, padding)
    np.testing.assert_allclose(compiled, sliced, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("pixel_major", [True, False])
@pytest.mark.parametrize("layout", ["plain", "shared input", "own inputs"])
def test_blocked_products_equal_whole_products(layout, pixel_major, monkeypatch):
    """Output, input gradient and weight gradient with the columns unfolded in blocks of
    one image … everything, and without keeping them, equal the one-GEMM results — with
    the blocks unfolded image-major or pixel-major (:mod:`._pixel_major`)."""
    rng = np.random.default_rng(3)
    population, batch = 3, 5
    x_shape = (population, batch, 2, 9, 8) if layout == "own inputs" else (batch, 2, 9, 8)
    w_shape = (4, 2, 3, 3) if layout == "plain" else (population, 4, 2, 3, 3)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)

    def evaluate() -> tuple[np.ndarray, ...]:
        x_t, w_t = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
        y = ops.conv2d(x_t, w_t, 2, 1)
        y.backward(np.cos(np.arange(y.size)).reshape(y.shape))
        with no_grad():
            inference = ops.conv2d(Tensor(x), Tensor(w), 2, 1).data
        return y.data, inference, x_t.grad, w_t.grad

    monkeypatch.setattr(_conv_products, "pays_for", lambda *shape: False)
    whole = evaluate()
    np.testing.assert_allclose(whole[1], whole[0], rtol=1e-12, atol=1e-12)  # inference
    monkeypatch.setattr(_conv_products, "pays_for", lambda *shape: pixel_major)
    monkeypatch.setattr(_conv_products, "KEEP_BYTES", 0)  # never materialise all columns
    for block_bytes in (1, 300, 3000, 6000, 1 << 30):  # 6000: blocks of 2, 2 and 1 image
        monkeypatch.setattr(_conv_products, "BLOCK_BYTES", block_bytes)
        for blocked, reference in zip(evaluate(), whole, strict=True):
            np.testing.assert_allclose(blocked, reference, rtol=1e-12, atol=1e-12)
