"""im2col and its adjoint col2im: the data movement that turns a convolution into a GEMM.

Layout ("channel-major columns"). Images come in G groups of N: (G, N, C, H, W); G is the
population size when every member has its own input, else 1. For kernel kh×kw, stride s
and zero padding, the columns are

    cols[g, (c, p, q), (n, i, j)] = x_pad[g, n, c, s·i + p, s·j + q]

a (G, K, M) array with K = C·kh·kw rows and M = N·Ho·Wo columns. With this orientation
every product of the convolution is a plain GEMM on contiguous operands:

    y = W · cols   (O×K)(K×M),    dW = g · colsᵀ,    d cols = Wᵀ · g,

and a population of P weights sharing one input is a single (P·O×K)(K×M) GEMM.
``col2im`` is the adjoint: it scatter-adds every column entry back to the pixel it was read
from, so ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.

The array implementation below works for NumPy and CuPy (kh·kw strided slice copies). For
NumPy arrays the compiled one-pass loops of :mod:`._im2col_numba` are used when Numba is
installed; set ``NOBOUND_NUMBA=0`` to keep the pure-NumPy path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nobound.autodiff.ops._compiled import numba_kernels
from nobound.backend import get_array_module


def _compiled() -> Any:
    """The Numba kernels (imported once by :mod:`._compiled`), or None without Numba."""
    return numba_kernels("_im2col_numba")


def output_length(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def uses_compiled_kernels(array: Any) -> bool:
    """Whether im2col/col2im on ``array`` run the Numba loops (NumPy array, Numba present)."""
    return isinstance(array, np.ndarray) and _compiled() is not None


def im2col(images: Any, kernel_h: int, kernel_w: int, stride: int, padding: int) -> Any:
    """(G, N, C, H, W) images → (G, C·kh·kw, N·Ho·Wo) columns (layout in the module doc)."""
    xp = get_array_module(images)
    groups, count, channels, height, width = images.shape
    out_h = output_length(height, kernel_h, stride, padding)
    out_w = output_length(width, kernel_w, stride, padding)
    if uses_compiled_kernels(images):
        cols = np.empty((groups, channels * kernel_h * kernel_w, count * out_h * out_w),
                        dtype=images.dtype)
        _compiled().im2col_into(np.ascontiguousarray(images), cols, kernel_h, kernel_w,
                                stride, padding)
        return cols
    # channel-major padded copy, so each kernel offset below is one strided slice
    padded = xp.zeros((groups, channels, count, height + 2 * padding, width + 2 * padding),
                      dtype=images.dtype)
    padded[..., padding:padding + height, padding:padding + width] = \
        images.transpose(0, 2, 1, 3, 4)
    cols = xp.empty((groups, channels, kernel_h, kernel_w, count, out_h, out_w),
                    dtype=images.dtype)
    for p in range(kernel_h):
        for q in range(kernel_w):
            cols[:, :, p, q] = padded[..., p:p + stride * out_h:stride,
                                      q:q + stride * out_w:stride]
    return cols.reshape(groups, channels * kernel_h * kernel_w, count * out_h * out_w)


def col2im(cols: Any, image_shape: tuple[int, ...], kernel_h: int, kernel_w: int,
           stride: int, padding: int) -> Any:
    """Adjoint of :func:`im2col`: (G, C·kh·kw, N·Ho·Wo) → images ``image_shape`` (G, N, C, H, W).

    images[g, n, c, y, x] = Σ over (p, q, i, j) with s·i + p − pad = y and s·j + q − pad = x
    of cols[g, (c, p, q), (n, i, j)].
    """
    xp = get_array_module(cols)
    groups, count, channels, height, width = image_shape
    out_h = output_length(height, kernel_h, stride, padding)
    out_w = output_length(width, kernel_w, stride, padding)
    if uses_compiled_kernels(cols):
        images = np.zeros(image_shape, dtype=cols.dtype)
        _compiled().col2im_into(np.ascontiguousarray(cols), images, kernel_h, kernel_w,
                                stride, padding)
        return images
    patches = cols.reshape(groups, channels, kernel_h, kernel_w, count, out_h, out_w)
    padded = xp.zeros((groups, channels, count, height + 2 * padding, width + 2 * padding),
                      dtype=cols.dtype)
    for p in range(kernel_h):
        for q in range(kernel_w):
            padded[..., p:p + stride * out_h:stride, q:q + stride * out_w:stride] += \
                patches[:, :, p, q]
    images = padded[..., padding:padding + height, padding:padding + width]
    return xp.ascontiguousarray(images.transpose(0, 2, 1, 3, 4))
