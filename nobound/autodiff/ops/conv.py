"""2-D convolution (cross-correlation, as PyTorch) and its transpose, with a population axis.

With im2col (:mod:`nobound.autodiff.ops._im2col`), a convolution is one matrix product.
``cols`` (K × M) holds every kh×kw patch of the zero-padded input as a *column*
(K = C·kh·kw patch entries, M = N·Ho·Wo output pixels). With W reshaped to (O, K) and
the upstream gradient g reshaped to (O, M),

    y = W · cols                                                     (forward)
    dW = g · colsᵀ,   d cols = Wᵀ · g,   dx = col2im(d cols)           (VJPs)

where ``col2im``, the adjoint of im2col, scatter-adds each patch entry back to the pixel
it came from. col2im(Wᵀ · ·) is therefore also the forward pass of the *transposed*
convolution, which bound back-substitution through a conv layer needs.

Population axis: the weight may be (P, O, C, kh, kw). The input is then either shared,
(*lead, C, H, W) with 4 dims, or per member, (P, *lead, C, H, W). A shared input is
unfolded once and all members are one GEMM, (P·O × K)(K × M); per-member inputs give
P GEMMs, (P, O, K)(P, K, M). In both cases the product's rows are (member, channel) and
its columns (image, i, j), so one transpose brings it to (P, N, O, Ho, Wo).
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from nobound.autodiff.ops._im2col import col2im, im2col
from nobound.autodiff.ops._util import lift
from nobound.autodiff.tensor import Tensor, is_grad_enabled
from nobound.backend import get_array_module

#: Bytes of im2col columns unfolded at once when they need not be kept (about the L2 cache):
#: small enough to stay in cache between im2col and the GEMM, large enough for an
#: efficient GEMM.
BLOCK_BYTES = 2 << 20


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output length: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def _layout(x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> tuple[int, int, tuple]:
    """(groups G of the input, images per group N, leading output shape)."""
    if len(w_shape) not in (4, 5):
        raise ValueError(f"conv weight must be (O,C,kh,kw) or (P,O,C,kh,kw), got {w_shape}")
    if len(x_shape) < 4:
        raise ValueError(f"conv input must be (..., C, H, W) with a batch axis, got {x_shape}")
    if x_shape[-3] != w_shape[-3]:
        raise ValueError(f"conv input has {x_shape[-3]} channels, weight expects {w_shape[-3]}")
    lead = tuple(x_shape[:-3])
    if len(w_shape) == 5:
        population = w_shape[0]
        if len(x_shape) == 4:  # shared input
            return 1, prod(lead), (population, *lead)
        if lead[0] != population:
            raise ValueError(f"input population axis {lead[0]} ≠ weight population {population}")
        return population, prod(lead[1:]), lead
    return 1, prod(lead), lead


def _weight_rows(w: Any, groups: int) -> Any:
    """W as (G, members/G · O, K): rows (member, out channel), matching im2col's groups."""
    return w.reshape(groups, -1, prod(w.shape[-3:]))


def _members(w_shape: tuple[int, ...]) -> int:
    """Population size of a weight: P for (P, O, C, kh, kw), 1 for (O, C, kh, kw)."""
    return w_shape[0] if len(w_shape) == 5 else 1


def _output_rows(g: Any, groups: int, members: int) -> Any:
    """(*lead, O, Ho, Wo) → (G, members/G · O, N·Ho·Wo): the layout of W · cols."""
    out_channels, out_h, out_w = g.shape[-3:]
    images = g.size // (members * out_channels * out_h * out_w)
    rows = g.reshape(members, images, out_channels, out_h * out_w).transpose(0, 2, 1, 3)
    return rows.reshape(groups, -1, images * out_h * out_w)


def _forward(x: Any, w: Any, stride: int, padding: int, keep_columns: bool = True
             ) -> tuple[Any, Any]:
    """y = W · im2col(x), and the columns (kept for the weight gradient, else None).

    When the columns need not be kept, NumPy inputs are unfolded a cache-sized block of
    images at a time (:func:`_product_in_blocks`): the same products, without ever writing
    the whole, kh·kw/s² times larger, column array to memory.
    """
    xp = get_array_module(x, w)
    groups, n, lead = _layout(x.shape, w.shape)
    out_channels, channels, kh, kw = w.shape[-4:]
    h, width = x.shape[-2:]
    ho, wo = output_size(h, kh, stride, padding), output_size(width, kw, stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(f"conv kernel {kh}x{kw} does not fit input {h}x{width}")
    images = x.reshape(groups, n, channels, h, width)
    if keep_columns or xp is not np:
        cols = im2col(images, kh, kw, stride, padding)
        out = xp.matmul(_weight_rows(w, groups), cols)  # (G, members/G · O, N·Ho·Wo)
    else:
        cols, out = None, _product_in_blocks(images, _weight_rows(w, groups), kh, kw, stride,
                                             padding, ho * wo)
    out = out.reshape(_members(w.shape), out_channels, n, ho, wo).transpose(0, 2, 1, 3, 4)
    return xp.ascontiguousarray(out).reshape(*lead, out_channels, ho, wo), cols


def _product_in_blocks(images: Any, w_rows: Any, kh: int, kw: int, stride: int, padding: int,
                       pixels: int) -> Any:
    """W · im2col(images), (G, R, N·pixels), unfolding ≤ BLOCK_BYTES of columns at a time.

    Blocks are whole groups when a group's columns fit, else slices of one group's images.
    """
    groups, count = images.shape[:2]
    image_bytes = w_rows.shape[-1] * pixels * images.itemsize
    per_block = max(1, BLOCK_BYTES // image_bytes)  # images per block
    group_step = max(1, per_block // count) if groups > 1 else 1
    image_step = min(count, per_block)
    out = np.empty((groups, w_rows.shape[1], count, pixels), dtype=np.result_type(images, w_rows))
    for g in range(0, groups, group_step):
        weights = w_rows[g:g + group_step] if groups > 1 else w_rows
        for i in range(0, count, image_step):
            block = images[g:g + group_step, i:i + image_step]
            cols = im2col(block, kh, kw, stride, padding)
            product = np.matmul(weights, cols)
            out[g:g + group_step, :, i:i + image_step] = product.reshape(
                product.shape[0], product.shape[1], block.shape[1], pixels)
    return out.reshape(groups, w_rows.shape[1], count * pixels)


def _input_grad(rows: Any, w: Any, x_shape: tuple[int, ...], stride: int, padding: int
                ) -> Any:
    """d x = col2im(Wᵀ · g), g given as :func:`_output_rows`: the transposed convolution.

    With a shared input the product Wᵀ · g runs over the merged (member, channel) axis, so
    it sums the members' contributions Σ_p W_pᵀ g_p in the GEMM itself.
    """
    xp = get_array_module(rows, w)
    groups, n, _ = _layout(x_shape, w.shape)
    _, channels, kh, kw = w.shape[-4:]
    d_cols = xp.matmul(_weight_rows(w, groups).swapaxes(-1, -2), rows)  # (G, K, N·Ho·Wo)
    images = col2im(d_cols, (groups, n, channels, *x_shape[-2:]), kh, kw, stride, padding)
    return images.reshape(x_shape)


def _weight_grad(rows: Any, cols: Any, w_shape: tuple[int, ...]) -> Any:
    """d W = g · colsᵀ, g given as :func:`_output_rows`.

    Computed as (cols · gᵀ)ᵀ: the same GEMM, but with the long N·Ho·Wo axis contracted in
    the operand order OpenBLAS handles faster for these thin shapes (K, O ≪ N·Ho·Wo).
    """
    xp = get_array_module(rows, cols)
    d_w = xp.matmul(cols, rows.swapaxes(-1, -2)).swapaxes(-1, -2)  # (G, members/G · O, K)
    return xp.ascontiguousarray(d_w).reshape(w_shape)


def conv2d(x: Any, weight: Any, stride: int = 1, padding: int = 0) -> Tensor:
    """y[o, i, j] = Σ_{c,p,q} W[o, c, p, q] · x_pad[c, s·i + p, s·j + q]  (no bias).

    vjp_x = conv_transpose2d(g, W);  vjp_W[o, c, p, q] = Σ_{i,j} g[o, i, j] x_pad[c, s·i+p, s·j+q].
    """
    x, weight = lift(x, weight)
    keep_columns = weight.requires_grad and is_grad_enabled()  # only d W reads them
    out, cols = _forward(x.data, weight.data, stride, padding, keep_columns)

    groups = _layout(x.shape, weight.shape)[0]

    def vjp(g: Any) -> tuple[Any, Any]:
        rows = _output_rows(g, groups, _members(weight.shape))
        gx = _input_grad(rows, weight.data, x.shape, stride, padding) \
            if x.requires_grad else None
        gw = _weight_grad(rows, cols, weight.shape) if weight.requires_grad else None
        return gx, gw

    return Tensor.from_op(out, (x, weight), vjp)


def conv_transpose2d(y: Any, weight: Any, input_hw: tuple[int, int], stride: int = 1,
                     padding: int = 0) -> Tensor:
    """The adjoint of :func:`conv2d` in its input: maps (…, O, Ho, Wo) to (…, C, H, W).

    ``<conv2d(x, W), y> = <x, conv_transpose2d(y, W)>`` for all x, y. ``input_hw`` fixes
    (H, W), which stride > 1 leaves ambiguous. VJPs: vjp_y = conv2d(g, W) and
    vjp_W = the conv weight gradient with input g and output gradient y.
    """
    y, weight = lift(y, weight)
    channels = weight.shape[-3]
    lead = y.shape[:-3]
    if weight.ndim == 5 and y.ndim == 4:
        raise ValueError("conv_transpose2d with a population weight needs a population input")
    kh, kw = weight.shape[-2:]
    expected = (weight.shape[-4], output_size(input_hw[0], kh, stride, padding),
                output_size(input_hw[1], kw, stride, padding))
    if y.ndim < 4 or tuple(y.shape[-3:]) != expected:
        # a wrong (O, Ho, Wo) of the same size would otherwise be silently reshaped
        raise ValueError(f"conv_transpose2d: input {y.shape} does not end in (O, Ho, Wo) = "
                         f"{expected} of a conv2d to {tuple(input_hw)}")
    x_shape = (*lead, channels, *input_hw)
    groups = _layout(x_shape, weight.shape)[0]
    members = _members(weight.shape)
    out = _input_grad(_output_rows(y.data, groups, members), weight.data, x_shape, stride,
                      padding)

    def vjp(g: Any) -> tuple[Any, Any]:
        gy, cols = _forward(g, weight.data, stride, padding, keep_columns=weight.requires_grad)
        gw = _weight_grad(_output_rows(y.data, groups, members), cols, weight.shape) \
            if weight.requires_grad else None
        return (gy if y.requires_grad else None), gw

    return Tensor.from_op(out, (y, weight), vjp)
