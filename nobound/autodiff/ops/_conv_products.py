"""The three matrix products of a convolution, whole or in cache-sized blocks of images.

Notation (see :mod:`nobound.autodiff.ops.conv`): images (G, N, C, H, W); columns
cols = im2col(images), (G, K, M) with K = C·kh·kw and M = N·Ho·Wo; weight rows W
(G, R, K) with R = (members / G)·O; output rows Y and gradient rows g (G, R, M), their
columns ordered (image, i, j) like those of cols. Then

    forward        Y  = W · cols
    input grad     dx = col2im(Wᵀ · g)
    weight grad    dW = g · colsᵀ

*Whole*: one (batched) GEMM each on fully materialised columns — the right choice for
small columns, whose forward copy can be kept for dW, and on the GPU.

*Blocked* (NumPy, columns larger than KEEP_BYTES or not needed afterwards): the images are
cut into blocks whose columns take at most BLOCK_BYTES (about an L2 cache); each block is
unfolded, multiplied and folded back while it is still in cache, and dW unfolds the input
again instead of keeping the columns. The products are the same (up to the order of
floating-point sums); memory traffic and peak memory drop by the factor K·M / BLOCK_BYTES,
and no temporary is large enough to need fresh pages from the kernel on every call.
When the columns outweigh the product (K > R rows, e.g. a 16-channel 4×4 layer: K = 256,
R = 16), each block is unfolded *pixel-major*
(:mod:`nobound.autodiff.ops._pixel_major`: columns ordered (i, j, image), copied in
contiguous runs over the images), and the block's R product rows are put back into
(image, i, j) order — a pass over R·n·Ho·Wo elements instead of K·n·Ho·Wo slow ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from nobound.autodiff.ops._im2col import col2im, im2col, output_length
from nobound.autodiff.ops._pixel_major import col2im_pixel_major, im2col_pixel_major, pays_for
from nobound.backend import get_array_module

#: Bytes of columns unfolded per block (about the L2 cache): small enough to stay in cache
#: between im2col and the GEMM, large enough for an efficient GEMM.
BLOCK_BYTES = 2 << 20
#: Larger column arrays are never materialised whole on the CPU. Kept for dW they would hold
#: kh·kw/s² times the input's memory until the backward pass, and above a few MB blocks are
#: faster anyway (measured: cnn5's second layer at batch 512, 26 MB of columns, forward and
#: backward 7 % faster in blocks; cnn3's at batch 128, 3 MB, 20 % slower in blocks).
KEEP_BYTES = 8 << 20


@dataclass(frozen=True)
class Window:
    """Kernel size, stride and zero padding of a convolution."""

    kernel_h: int
    kernel_w: int
    stride: int
    padding: int

    def unfold(self, images: Any) -> Any:
        return im2col(images, self.kernel_h, self.kernel_w, self.stride, self.padding)

    def fold(self, cols: Any, image_shape: tuple[int, ...]) -> Any:
        return col2im(cols, image_shape, self.kernel_h, self.kernel_w, self.stride,
                      self.padding)

    def unfold_pixel_major(self, images: Any) -> Any:
        """(G, n, C, H, W) → (G, K, Ho·Wo·n) columns ordered (i, j, image)."""
        return im2col_pixel_major(images, self.kernel_h, self.kernel_w, self.stride,
                                  self.padding)

    def fold_pixel_major(self, cols: Any, image_shape: tuple[int, ...]) -> Any:
        return col2im_pixel_major(cols, image_shape, self.kernel_h, self.kernel_w,
                                  self.stride, self.padding)

    def out_shape(self, height: int, width: int) -> tuple[int, int]:
        """(Ho, Wo), see :func:`output_length`."""
        return (output_length(height, self.kernel_h, self.stride, self.padding),
                output_length(width, self.kernel_w, self.stride, self.padding))

    def column_bytes(self, images_shape: tuple[int, ...], itemsize: int) -> int:
        """Size of im2col of images (G, N, C, H, W)."""
        groups, count, channels, height, width = images_shape
        out_h, out_w = self.out_shape(height, width)
        return groups * count * channels * self.kernel_h * self.kernel_w * out_h * out_w * \
            itemsize


def _blocks(groups: int, count: int, image_bytes: int) -> list[tuple[slice, slice]]:
    """(groups, images) index pairs covering all images, ≤ BLOCK_BYTES of columns each:
    several whole groups at a time when one group fits, else slices of one group."""
    per_block = max(1, BLOCK_BYTES // image_bytes)
    if per_block >= count:
        step = per_block // count
        return [(slice(g, g + step), slice(0, count)) for g in range(0, groups, step)]
    return [(slice(g, g + 1), slice(i, i + per_block))
            for g in range(groups) for i in range(0, count, per_block)]


def _pixel_major(array: Any, images_shape: tuple[int, ...], window: Window, rows: int
                 ) -> bool:
    """Whether blocks of images (G, N, C, H, W) are unfolded pixel-major: NumPy arrays whose
    blocks pass :func:`pays_for` (with the images of one group a block of :func:`_blocks`
    holds)."""
    if not isinstance(array, np.ndarray):
        return False
    groups, count, channels, height, width = images_shape
    kernel_size = channels * window.kernel_h * window.kernel_w
    image_bytes = window.column_bytes(images_shape, array.itemsize) // (groups * count)
    images = min(count, max(1, BLOCK_BYTES // image_bytes))
    out_w = output_length(width, window.kernel_w, window.stride, window.padding)
    return pays_for(kernel_size, rows, window.stride, out_w, images)


def _pixel_major_rows(rows: Any, part: slice, pixels: int) -> Any:
    """Rows (G', R, M) restricted to the images in ``part``, as (G', R, Ho·Wo·n) with the
    columns ordered (i, j, image) like pixel-major columns."""
    block = rows[:, :, _columns_of(part, pixels)]  # the last block may be short
    block = block.reshape(*block.shape[:2], -1, pixels)
    return np.ascontiguousarray(block.swapaxes(2, 3)).reshape(*block.shape[:2], -1)


def _columns_of(part: slice, pixels: int) -> slice:
    """The M-axis columns (image, i, j) of the images in ``part``."""
    return slice(part.start * pixels, part.stop * pixels)


def _blocked(array: Any, images_shape: tuple[int, ...], window: Window, limit: int,
             pixel_major: bool) -> bool:
    """Whether to work in blocks: NumPy columns above ``limit`` bytes, or any unfolded
    pixel-major (then faster than whole columns even when these could be kept: cnn5's
    second layer at batch 128, forward + backward 5.3 against 5.9 ms)."""
    return isinstance(array, np.ndarray) and (
        pixel_major or window.column_bytes(images_shape, array.itemsize) > limit)


def forward(images: Any, w_rows: Any, window: Window, keep_columns: bool
            ) -> tuple[Any, Any]:
    """Y = W · cols, (G, R, M), and cols when ``keep_columns`` and they are small (else None)."""
    xp = get_array_module(images, w_rows)
    pixel_major = _pixel_major(images, images.shape, window, w_rows.shape[1])
    if not _blocked(images, images.shape, window, KEEP_BYTES if keep_columns else 0,
                    pixel_major):
        cols = window.unfold(images)
        return xp.matmul(w_rows, cols), (cols if keep_columns else None)
    groups, count = images.shape[:2]
    rows, kernel_size = w_rows.shape[1:]
    pixels = prod(window.out_shape(*images.shape[-2:]))
    out = np.empty((groups, rows, count * pixels), dtype=np.result_type(images, w_rows))
    image_bytes = kernel_size * pixels * images.itemsize
    if pixel_major:
        grouped = out.reshape(groups, rows, count, pixels)
        for group, part in _blocks(groups, count, image_bytes):
            product = np.matmul(w_rows[group], window.unfold_pixel_major(images[group, part]))
            # columns (i, j, image) back to (image, i, j)
            grouped[group, :, part] = product.reshape(*product.shape[:2], pixels, -1
                                                      ).swapaxes(2, 3)
        return out, None
    for group, part in _blocks(groups, count, image_bytes):
        # a block of images is a contiguous run of M: a view the GEMM writes into
        np.matmul(w_rows[group], window.unfold(images[group, part]),
                  out=out[group, :, _columns_of(part, pixels)])
    return out, None


def input_grad(rows: Any, w_rows: Any, images_shape: tuple[int, ...], window: Window) -> Any:
    """dx = col2im(Wᵀ · g) as images (G, N, C, H, W).

    For a shared input (G = 1, R = P·O) the GEMM runs over the merged (member, channel)
    axis, so it sums the members' contributions Σ_p W_pᵀ g_p itself.
    """
    xp = get_array_module(rows, w_rows)
    w_columns = w_rows.swapaxes(-1, -2)  # (G, K, R)
    # pixel-major here also costs a transposing copy of the R rows before the product, so
    # the K columns must outweigh twice the rows: cnn5's first layer at batch 2,304 rows
    # (K = 25, R = 16) folded in 14.6 ms image-major against 17.0 ms pixel-major; K = 25,
    # R = 8 in 10.9 ms pixel-major against 11.5 ms; K = 256, R = 16: 23 against 34 ms
    pixel_major = _pixel_major(rows, images_shape, window, 2 * w_rows.shape[1])
    if not _blocked(rows, images_shape, window, KEEP_BYTES, pixel_major):
        return window.fold(xp.matmul(w_columns, rows), images_shape)
    groups, count = images_shape[:2]
    pixels = rows.shape[-1] // count
    grad = np.empty(images_shape, dtype=np.result_type(rows, w_rows))
    kernel_size = w_rows.shape[2]
    image_bytes = kernel_size * pixels * rows.itemsize
    if pixel_major:
        for group, part in _blocks(groups, count, image_bytes):
            d_cols = np.matmul(w_columns[group], _pixel_major_rows(rows[group], part, pixels))
            grad[group, part] = window.fold_pixel_major(d_cols, grad[group, part].shape)
        return grad
    for group, part in _blocks(groups, count, image_bytes):
        d_cols = np.matmul(w_columns[group], rows[group, :, _columns_of(part, pixels)])
        grad[group, part] = window.fold(d_cols, grad[group, part].shape)
    return grad


def weight_grad(rows: Any, cols: Any, images: Any, window: Window) -> Any:
    """dW = g · colsᵀ, (G, R, K), from the kept columns or, when None, from the images.

    Computed as (cols · gᵀ)ᵀ: the same GEMM, with the long M axis contracted in the operand
    order OpenBLAS handles faster for these thin shapes (K, R ≪ M).
    """
    xp = get_array_module(rows, images)
    if cols is not None:
        return xp.ascontiguousarray(xp.matmul(cols, rows.swapaxes(-1, -2)).swapaxes(-1, -2))
    groups, count, channels = images.shape[:3]
    pixels = rows.shape[-1] // count
    kernel_size = channels * window.kernel_h * window.kernel_w
    grad = np.zeros((groups, rows.shape[1], kernel_size), dtype=np.result_type(rows, images))
    image_bytes = kernel_size * pixels * images.itemsize
    if _pixel_major(images, images.shape, window, rows.shape[1]):
        for group, part in _blocks(groups, count, image_bytes):
            cols = window.unfold_pixel_major(images[group, part])
            g_block = _pixel_major_rows(rows[group], part, pixels)
            grad[group] += np.matmul(cols, g_block.swapaxes(-1, -2)).swapaxes(-1, -2)
        return grad
    for group, part in _blocks(groups, count, image_bytes):
        g_block = rows[group, :, _columns_of(part, pixels)]
        grad[group] += np.matmul(window.unfold(images[group, part]),
                                 g_block.swapaxes(-1, -2)).swapaxes(-1, -2)
    return grad
