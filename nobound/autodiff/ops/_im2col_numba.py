"""Optional compiled im2col / col2im loops (Numba), used for NumPy arrays when installed.

They compute exactly what :mod:`nobound.autodiff.ops._im2col` computes with array slicing,
in one pass instead of kh·kw strided passes; col2im gains most (NumPy needs a
read-modify-write of the whole image per kernel offset). Importing this module raises
``ImportError`` without Numba, and the caller keeps the NumPy path.

Layout (see :mod:`nobound.autodiff.ops._im2col`): images (G, N, C, H, W), columns
(G, C·kh·kw, N·Ho·Wo), both C-contiguous. The loops walk the columns row by row, so the
big array is streamed in memory order. For a kernel offset (p, q) the output rows i and
columns j that read inside the image (not the zero padding) are the intervals computed by
:func:`_inside`. Indices are taken as unsigned so Numba skips its negative-index
wrap-around test in the innermost loop.

The loops are deliberately serial: they are memory-bound, and a parallel loop's barrier
stalls badly when the cores are shared with other processes (measured: 0.2 ms serial vs
20+ ms with two threads on a loaded 2-core machine). BLAS keeps its own threads for the
GEMMs, where they pay off. They release the GIL (``nogil``), so the worker threads of a
population evaluation (``evaluate_population(workers=…)``) unfold their chunks concurrently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _inside(offset: int, stride: int, padding: int, size: int, out_size: int
            ) -> tuple[int, int]:
    """The output indices j with 0 ≤ stride·j + offset − padding < size, as [first, stop)."""
    first = max(0, (padding - offset + stride - 1) // stride)
    stop = min(out_size, (size - 1 + padding - offset) // stride + 1)
    return first, max(first, stop)


@njit(cache=True, boundscheck=False, nogil=True)
def im2col_into(images: Any, cols: Any, kernel_h: int, kernel_w: int, stride: int,
                padding: int) -> None:
    """cols[g, (c, p, q), (n, i, j)] = x_pad[g, n, c, s·i + p, s·j + q]; ``cols`` overwritten."""
    groups, count, channels, height, width = images.shape
    out_h = (height + 2 * padding - kernel_h) // stride + 1
    out_w = (width + 2 * padding - kernel_w) // stride + 1
    rows, row_length = cols.shape[1], cols.shape[2]
    source, target = images.ravel(), cols.ravel()
    for flat_row in range(groups * rows):  # (g, row) flattened: cols' rows in memory order
        g, row = flat_row // rows, flat_row % rows
        c, p, q = row // (kernel_h * kernel_w), (row // kernel_w) % kernel_h, row % kernel_w
        i_first, i_stop = _inside(p, stride, padding, height, out_h)
        j_first, j_stop = _inside(q, stride, padding, width, out_w)
        row_start = flat_row * row_length
        target[row_start:row_start + row_length] = 0
        for n in range(count):
            plane = ((g * count + n) * channels + c) * height * width
            for i in range(i_first, i_stop):
                read = plane + (stride * i + p - padding) * width + q - padding
                write = row_start + (n * out_h + i) * out_w
                for j in range(j_first, j_stop):
                    target[np.uint64(write + j)] = source[np.uint64(read + stride * j)]


@njit(cache=True, boundscheck=False, nogil=True)
def col2im_into(cols: Any, images: Any, kernel_h: int, kernel_w: int, stride: int,
                padding: int) -> None:
    """images[g, n, c, s·i + p − pad, s·j + q − pad] += cols[g, (c, p, q), (n, i, j)].

    ``images`` must be zero on entry (or hold values to accumulate onto).
    """
    groups, count, channels, height, width = images.shape
    out_h = (height + 2 * padding - kernel_h) // stride + 1
    out_w = (width + 2 * padding - kernel_w) // stride + 1
    rows, row_length = cols.shape[1], cols.shape[2]
    source, target = cols.ravel(), images.ravel()
    for plane_index in range(groups * channels):
        g, c = plane_index // channels, plane_index % channels
        for p in range(kernel_h):
            i_first, i_stop = _inside(p, stride, padding, height, out_h)
            for q in range(kernel_w):
                j_first, j_stop = _inside(q, stride, padding, width, out_w)
                row_start = (g * rows + (c * kernel_h + p) * kernel_w + q) * row_length
                for n in range(count):
                    plane = ((g * count + n) * channels + c) * height * width
                    for i in range(i_first, i_stop):
                        write = plane + (stride * i + p - padding) * width + q - padding
                        read = row_start + (n * out_h + i) * out_w
                        for j in range(j_first, j_stop):
                            target[np.uint64(write + stride * j)] += source[np.uint64(read + j)]
