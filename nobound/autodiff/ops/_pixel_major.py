"""Pixel-major columns: im2col and col2im for blocks of images, the image index innermost.

The columns of :mod:`nobound.autodiff.ops._im2col` are ordered (image, i, j), so each row
(c, p, q) of them is filled from the stride-s positions of one image row at a time: runs of
Wo elements read s apart, which no vector instruction copies well (7 elements for cnn3's
and cnn5's second layers). For one block of n images this module orders the columns
(i, j, image) instead — per group g of a population, as everywhere in the conv code —

    cols[g, (c, p, q), (i, j, m)] = x_pad[g, m, c, s·i + p, s·j + q],

and first transposes the block to "batch-last" layout x_t[g, c, y, x, m] = x[g, m, c, y, x], so
every (row, i, j) is one contiguous run of n elements, copied (or, in col2im, added) at
memory speed. The convolution's products are the same sums in any column order; the
caller re-orders the product's columns, which are R rows against the columns' K = C·kh·kw,
so this pays when K > R and the blocks hold enough images (:func:`pays_for`): not for
cnn7's 64-channel 3×3 stride-1 layer, whose 32×32 images fill a block one at a time and
whose image-major rows are already runs of 32.

Measured on cnn5's second layer (16 channels, 4×4, stride 2), a 40-image block of 1.9 MB
of columns: 0.10 ms to transpose and unfold against 0.26 ms for the (image, i, j) loop.

The array versions below run anywhere (NumPy, CuPy); for NumPy arrays the compiled loops
of :mod:`._pixel_major_numba` are used when Numba is installed. ``col2im_pixel_major`` is
the adjoint of ``im2col_pixel_major``: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nobound.autodiff.ops._compiled import numba_kernels
from nobound.autodiff.ops._im2col import output_length
from nobound.backend import get_array_module

#: Fewer images per block make runs too short to beat the (image, i, j) loops.
MIN_IMAGES = 8


def pays_for(kernel_size: int, rows: int, stride: int, out_w: int, images: int) -> bool:
    """Whether pixel-major columns pay for blocks of ``images`` images: the columns (K rows)
    must outweigh the product (R rows), whose columns are put back into (image, i, j)
    order, and the runs over the images must be longer than those of the image-major
    loops — Wo elements at stride 1, single elements at a larger stride."""
    image_major_run = out_w if stride == 1 else 1
    return kernel_size > rows and images >= MIN_IMAGES and images > image_major_run


def _compiled(array: Any) -> Any:
    return numba_kernels("_pixel_major_numba") if isinstance(array, np.ndarray) else None


def im2col_pixel_major(images: Any, kernel_h: int, kernel_w: int, stride: int,
                       padding: int) -> Any:
    """(G, n, C, H, W) images → (G, C·kh·kw, Ho·Wo·n) columns ordered (i, j, image), for
    each of the G groups."""
    xp = get_array_module(images)
    groups, count, channels, height, width = images.shape
    out_h = output_length(height, kernel_h, stride, padding)
    out_w = output_length(width, kernel_w, stride, padding)
    kernel_size = channels * kernel_h * kernel_w
    kernels = _compiled(images)
    if kernels is not None:
        transposed = np.ascontiguousarray(images.transpose(0, 2, 3, 4, 1))
        cols = np.empty((groups, kernel_size, out_h * out_w * count), images.dtype)
        kernels.im2col_batch_last_into(transposed, cols, kernel_h, kernel_w, stride, padding)
        return cols
    padded = xp.zeros((groups, channels, height + 2 * padding, width + 2 * padding, count),
                      dtype=images.dtype)
    padded[:, :, padding:padding + height, padding:padding + width] = \
        images.transpose(0, 2, 3, 4, 1)
    cols = xp.empty((groups, channels, kernel_h, kernel_w, out_h, out_w, count),
                    dtype=images.dtype)
    for p in range(kernel_h):
        for q in range(kernel_w):
            cols[:, :, p, q] = padded[:, :, p:p + stride * out_h:stride,
                                      q:q + stride * out_w:stride]
    return cols.reshape(groups, kernel_size, out_h * out_w * count)


def col2im_pixel_major(cols: Any, image_shape: tuple[int, ...], kernel_h: int, kernel_w: int,
                       stride: int, padding: int) -> Any:
    """Adjoint of :func:`im2col_pixel_major`: (G, C·kh·kw, Ho·Wo·n) → images (G, n, C, H, W),

    images[g, m, c, y, x] = Σ over (p, q, i, j) with s·i + p − pad = y and s·j + q − pad = x
    of cols[g, (c, p, q), (i, j, m)].
    """
    xp = get_array_module(cols)
    groups, count, channels, height, width = image_shape
    out_h = output_length(height, kernel_h, stride, padding)
    out_w = output_length(width, kernel_w, stride, padding)
    kernels = _compiled(cols)
    if kernels is not None:
        images = np.empty((groups, count, channels, height, width), cols.dtype)
        kernels.col2im_pixel_major_into(np.ascontiguousarray(cols), images, kernel_h,
                                        kernel_w, stride, padding)
        return images
    patches = cols.reshape(groups, channels, kernel_h, kernel_w, out_h, out_w, count)
    padded = xp.zeros((groups, channels, height + 2 * padding, width + 2 * padding, count),
                      dtype=cols.dtype)
    for p in range(kernel_h):
        for q in range(kernel_w):
            padded[:, :, p:p + stride * out_h:stride, q:q + stride * out_w:stride] += \
                patches[:, :, p, q]
    images = padded[:, :, padding:padding + height, padding:padding + width]
    return xp.ascontiguousarray(images.transpose(0, 4, 1, 2, 3))
