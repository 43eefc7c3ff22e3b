"""2-D convolution (cross-correlation, as PyTorch) and its transpose, with a population axis.

With im2col, a convolution is one matrix product. Let ``cols`` hold every kh×kw patch of
the zero-padded input as a row of length K = C·kh·kw (``sliding_window_view`` gives them
without copying until the reshape). Then, for W reshaped to (O, K),

    y = cols · Wᵀ                                   (forward)
    dW = gᵀ · cols,   d cols = g · W,   dx = col2im(d cols)          (VJPs)

where ``col2im`` scatter-adds each patch row back to the pixels it came from: it is the
adjoint of im2col, and therefore also the forward pass of the *transposed* convolution,
which is what bound back-substitution through a conv layer needs.

Population axis: the weight may be (P, O, C, kh, kw). The input is then either shared,
(*lead, C, H, W) with 4 dims, or per member, (P, *lead, C, H, W). Shared inputs are
unfolded once and multiplied against all P weights in one batched GEMM.
"""

from __future__ import annotations

from math import prod
from typing import Any

from nobound.autodiff.ops._util import lift
from nobound.autodiff.tensor import Tensor
from nobound.backend import get_array_module


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


def _im2col(x: Any, groups: int, kh: int, kw: int, stride: int, padding: int) -> Any:
    """(G·N, C, H, W) → (G, N·Ho·Wo, C·kh·kw): one row per output pixel."""
    xp = get_array_module(x)
    if padding:
        x = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = xp.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # (G·N, C, Ho, Wo, kh, kw)
    n, c, ho, wo = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(groups, (n // groups) * ho * wo,
                                                       c * kh * kw)


def _col2im(cols: Any, image_shape: tuple[int, ...], kh: int, kw: int, stride: int,
            padding: int) -> Any:
    """Adjoint of :func:`_im2col`: (M, N·Ho·Wo, C·kh·kw) → (M·N, C, H, W) by scatter-add."""
    xp = get_array_module(cols)
    n, c, h, w = image_shape
    ho, wo = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    patches = cols.reshape(n, ho, wo, c, kh, kw).transpose(0, 4, 5, 3, 1, 2)
    padded = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += patches[:, i, j]
    return padded[:, :, padding:padding + h, padding:padding + w]


def _forward(x: Any, w: Any, stride: int, padding: int) -> tuple[Any, Any]:
    xp = get_array_module(x, w)
    groups, n, lead = _layout(x.shape, w.shape)
    out_channels, channels, kh, kw = w.shape[-4:]
    h, width = x.shape[-2:]
    ho, wo = output_size(h, kh, stride, padding), output_size(width, kw, stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(f"conv kernel {kh}x{kw} does not fit input {h}x{width}")
    cols = _im2col(x.reshape(groups * n, channels, h, width), groups, kh, kw, stride, padding)
    w_matrix = w.reshape(-1, out_channels, channels * kh * kw)
    out = xp.matmul(cols, w_matrix.transpose(0, 2, 1))  # (G', N·Ho·Wo, O)
    out = out.reshape(-1, n, ho, wo, out_channels).transpose(0, 1, 4, 2, 3)
    return xp.ascontiguousarray(out).reshape(*lead, out_channels, ho, wo), cols


def _input_grad(g: Any, w: Any, x_shape: tuple[int, ...], stride: int, padding: int) -> Any:
    """d x = col2im(g · W): the transposed convolution of ``g`` (output shape → input shape)."""
    xp = get_array_module(g, w)
    groups, n, _ = _layout(x_shape, w.shape)
    out_channels, channels, kh, kw = w.shape[-4:]
    ho, wo = g.shape[-2:]
    g_rows = g.reshape(-1, n, out_channels, ho, wo).transpose(0, 1, 3, 4, 2)
    g_rows = g_rows.reshape(-1, n * ho * wo, out_channels)  # (G', M, O)
    w_matrix = w.reshape(-1, out_channels, channels * kh * kw)
    if groups == 1 and g_rows.shape[0] > 1:
        # shared input: Σ_p g_p W_p is one GEMM over the merged (member, channel) axis
        members = g_rows.shape[0]
        d_cols = g_rows.transpose(1, 0, 2).reshape(1, n * ho * wo, members * out_channels) @ \
            w_matrix.reshape(1, members * out_channels, -1)
    else:
        d_cols = xp.matmul(g_rows, w_matrix)
    images = _col2im(d_cols, (groups * n, channels, *x_shape[-2:]), kh, kw, stride, padding)
    return images.reshape(x_shape)


def _weight_grad(g: Any, cols: Any, w_shape: tuple[int, ...]) -> Any:
    """d W = gᵀ · cols, summed over members that share one weight."""
    out_channels = w_shape[-4]
    ho, wo = g.shape[-2:]
    g_rows = g.reshape(cols.shape[0] if len(w_shape) == 4 else w_shape[0], -1,
                       out_channels, ho, wo)
    g_rows = g_rows.transpose(0, 1, 3, 4, 2).reshape(g_rows.shape[0], -1, out_channels)
    if len(w_shape) == 4:  # one weight: merge the groups into the row axis
        return (g_rows.reshape(-1, out_channels).T @ cols.reshape(-1, cols.shape[-1])
                ).reshape(w_shape)
    xp = get_array_module(g)
    return xp.matmul(g_rows.transpose(0, 2, 1), cols).reshape(w_shape)


def conv2d(x: Any, weight: Any, stride: int = 1, padding: int = 0) -> Tensor:
    """y[o, i, j] = Σ_{c,p,q} W[o, c, p, q] · x_pad[c, s·i + p, s·j + q]  (no bias).

    vjp_x = conv_transpose2d(g, W);  vjp_W[o, c, p, q] = Σ_{i,j} g[o, i, j] x_pad[c, s·i+p, s·j+q].
    """
    x, weight = lift(x, weight)
    out, cols = _forward(x.data, weight.data, stride, padding)

    def vjp(g: Any) -> tuple[Any, Any]:
        gx = _input_grad(g, weight.data, x.shape, stride, padding) if x.requires_grad else None
        gw = _weight_grad(g, cols, weight.shape) if weight.requires_grad else None
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
    out = _input_grad(y.data, weight.data, x_shape, stride, padding)

    def vjp(g: Any) -> tuple[Any, Any]:
        gy, cols = _forward(g, weight.data, stride, padding)
        gw = _weight_grad(y.data, cols, weight.shape) if weight.requires_grad else None
        return (gy if y.requires_grad else None), gw

    return Tensor.from_op(out, (y, weight), vjp)
