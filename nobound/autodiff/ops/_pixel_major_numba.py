"""Compiled loops (Numba) for :mod:`nobound.autodiff.ops._pixel_major`.

They compute exactly what the array versions there compute, for G groups of n images
in batch-last layout (G, C, H, W, n): the unfold to and the fold from pixel-major columns
(G, C·kh·kw, Ho·Wo·n), whose innermost loop runs over the n images of one (row, i, j): a
contiguous run in both arrays, which the compiler vectorises. Positions in the zero
padding are written as zeros (unfold) or skipped (fold). Serial and ``nogil``, like the
other compiled passes: population workers run them concurrently. (The unfold's layout
change is NumPy's transposing copy, as fast as a loop here; the fold changes the layout
channel by channel itself.)
Importing this module raises ``ImportError`` without Numba.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit


@njit(cache=True, boundscheck=False, nogil=True)
def im2col_batch_last_into(transposed: Any, cols: Any, kernel_h: int, kernel_w: int,
                           stride: int, padding: int) -> None:
    """cols[g, (c, p, q), (i, j, m)] = x_pad[g, m, c, s·i + p, s·j + q] from batch-last
    images transposed[g, c, y, x, m]; ``cols`` overwritten."""
    groups, channels, height, width, count = transposed.shape
    out_h = (height + 2 * padding - kernel_h) // stride + 1
    out_w = (width + 2 * padding - kernel_w) // stride + 1
    for g in range(groups):
        for c in range(channels):
            for p in range(kernel_h):
                for q in range(kernel_w):
                    row = (c * kernel_h + p) * kernel_w + q
                    for i in range(out_h):
                        y = stride * i + p - padding
                        for j in range(out_w):
                            x = stride * j + q - padding
                            start = (i * out_w + j) * count
                            if 0 <= y < height and 0 <= x < width:
                                for m in range(count):
                                    cols[g, row, start + m] = transposed[g, c, y, x, m]
                            else:
                                for m in range(count):
                                    cols[g, row, start + m] = 0


@njit(cache=True, boundscheck=False, nogil=True)
def col2im_pixel_major_into(cols: Any, images: Any, kernel_h: int, kernel_w: int,
                            stride: int, padding: int) -> None:
    """images[g, m, c, s·i + p − pad, s·j + q − pad] = Σ cols[g, (c, p, q), (i, j, m)] over
    the positions inside the image; ``images`` (G, n, C, H, W) overwritten.

    The sums are formed batch-last, one channel at a time in a small (H, W, n) buffer (an
    L2-sized piece, added to in runs over the n images), and each finished channel is
    written out image-major: no batch-last copy of the whole block, and no transposing
    copy of it afterwards."""
    groups, count, channels, height, width = images.shape
    out_h = (height + 2 * padding - kernel_h) // stride + 1
    out_w = (width + 2 * padding - kernel_w) // stride + 1
    channel = np.empty((height, width, count), dtype=images.dtype)
    for g in range(groups):
        for c in range(channels):
            channel[:] = 0
            for p in range(kernel_h):
                for q in range(kernel_w):
                    row = (c * kernel_h + p) * kernel_w + q
                    for i in range(out_h):
                        y = stride * i + p - padding
                        if y < 0 or y >= height:
                            continue
                        for j in range(out_w):
                            x = stride * j + q - padding
                            if x < 0 or x >= width:
                                continue
                            start = (i * out_w + j) * count
                            for m in range(count):
                                channel[y, x, m] += cols[g, row, start + m]
            for m in range(count):
                for y in range(height):
                    for x in range(width):
                        images[g, m, c, y, x] = channel[y, x, m]
