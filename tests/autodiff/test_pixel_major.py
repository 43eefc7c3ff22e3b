"""Pixel-major im2col / col2im (columns ordered (i, j, image)) for blocks of images.

* the columns are those of im2col (:mod:`._im2col`, ordered (image, i, j)) with the
  column order permuted, for any kernel, stride and padding (hypothesis);
* col2im_pixel_major is the exact adjoint of im2col_pixel_major;
* the compiled loops give the same arrays as the array path.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nobound.autodiff.ops import _compiled, _im2col, _pixel_major


@st.composite
def blocks(draw: st.DrawFn) -> tuple[tuple[int, ...], int, int, int]:
    """(image shape (G, n, C, H, W), kernel, stride, padding), ≥ 1 output pixel."""
    kernel = draw(st.integers(1, 5))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, kernel))
    height = draw(st.integers(max(1, kernel - 2 * padding), 9))
    width = draw(st.integers(max(1, kernel - 2 * padding), 9))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 3)),
             height, width)
    return shape, kernel, stride, padding


def use_array_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_compiled._loaded, "_pixel_major_numba", None)


def numba_installed() -> bool:
    return _compiled.numba_kernels("_pixel_major_numba") is not None


def image_major(cols: np.ndarray, count: int, pixels: int) -> np.ndarray:
    """(G, K, (i, j, image)) → (G, K, (image, i, j)), the order of _im2col's columns."""
    groups, kernel_size = cols.shape[:2]
    return cols.reshape(groups, kernel_size, pixels, count).swapaxes(2, 3).reshape(
        groups, kernel_size, -1)


@pytest.mark.parametrize("compiled", [False, True])
@given(block=blocks(), seed=st.integers(0, 2**16))
def test_columns_are_im2col_columns_in_pixel_major_order(compiled, block, seed):
    if compiled and not numba_installed():
        pytest.skip("Numba is not installed")
    shape, kernel, stride, padding = block
    images = np.random.default_rng(seed).standard_normal(shape)
    saved = dict(_compiled._loaded)
    if not compiled:
        _compiled._loaded["_pixel_major_numba"] = None
    try:
        cols = _pixel_major.im2col_pixel_major(images, kernel, kernel, stride, padding)
    finally:
        _compiled._loaded.clear()
        _compiled._loaded.update(saved)
    reference = _im2col.im2col(images, kernel, kernel, stride, padding)
    pixels = reference.shape[2] // shape[1]
    np.testing.assert_array_equal(image_major(cols, shape[1], pixels), reference)


@given(block=blocks(), seed=st.integers(0, 2**16))
def test_col2im_pixel_major_is_the_adjoint(block, seed):
    shape, kernel, stride, padding = block
    rng = np.random.default_rng(seed)
    images = rng.standard_normal(shape)
    cols = _pixel_major.im2col_pixel_major(images, kernel, kernel, stride, padding)
    weights = rng.standard_normal(cols.shape)
    folded = _pixel_major.col2im_pixel_major(weights, shape, kernel, kernel, stride, padding)
    assert folded.shape == shape
    assert float((images * folded).sum()) == pytest.approx(float((cols * weights).sum()),
                                                           rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((1, 5, 3, 9, 9), 3, 1, 1), ((2, 7, 2, 8, 8), 3, 2, 0), ((3, 4, 16, 14, 14), 4, 2, 1),
    ((1, 3, 1, 28, 28), 5, 2, 2), ((2, 3, 4, 6, 6), 5, 3, 5)])
def test_compiled_and_array_col2im_agree(shape, kernel, stride, padding, monkeypatch):
    if not numba_installed():
        pytest.skip("Numba is not installed")
    rng = np.random.default_rng(1)
    cols_shape = _pixel_major.im2col_pixel_major(rng.standard_normal(shape), kernel, kernel,
                                                 stride, padding).shape
    cols = rng.standard_normal(cols_shape)
    compiled = _pixel_major.col2im_pixel_major(cols, shape, kernel, kernel, stride, padding)
    use_array_path(monkeypatch)
    array = _pixel_major.col2im_pixel_major(cols, shape, kernel, kernel, stride, padding)
    np.testing.assert_allclose(compiled, array, rtol=1e-13, atol=1e-13)


def test_pixel_major_pays_only_for_heavy_columns_and_long_runs():
    # cnn5's second layer (16 channels, 4×4, stride 2) in blocks of 40 images
    assert _pixel_major.pays_for(kernel_size=256, rows=16, stride=2, out_w=7, images=40)
    # 256 members sharing one input: the product (R = 2048 rows) outweighs the columns
    assert not _pixel_major.pays_for(kernel_size=25, rows=2048, stride=2, out_w=14,
                                     images=32)
    # cnn7's 64-channel 3×3 stride-1 layer: one 32×32 image per block, rows already long
    assert not _pixel_major.pays_for(kernel_size=576, rows=64, stride=1, out_w=32, images=1)
    assert not _pixel_major.pays_for(kernel_size=576, rows=64, stride=1, out_w=32, images=16)
