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

The products themselves live in :mod:`nobound.autodiff.ops._conv_products`: on the CPU,
columns that would be large are never materialised whole but unfolded a cache-sized block
of images at a time, and dW unfolds the input again rather than keeping them.
"""

from __future__ import annotations

from math import prod
from typing import Any

from nobound.autodiff.ops import _conv_products as products
from nobound.autodiff.ops._compiled import numba_kernels, suits_compiled_pass
from nobound.autodiff.ops._conv_products import Window
from nobound.autodiff.ops._im2col import output_length
from nobound.autodiff.ops._util import lift
from nobound.autodiff.tensor import Tensor, is_grad_enabled
from nobound.backend import get_array_module


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output length: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return output_length(size, kernel, stride, padding)


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


def _images(x: Any, w_shape: tuple[int, ...]) -> Any:
    """The input as (G, N, C, H, W)."""
    groups, count, _ = _layout(x.shape, w_shape)
    return x.reshape(groups, count, *x.shape[-3:])


def _weight_rows(w: Any, groups: int) -> Any:
    """W as (G, members/G · O, K): rows (member, out channel), matching the groups."""
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


def _forward(x: Any, w: Any, window: Window, keep_columns: bool, bias: Any = None
             ) -> tuple[Any, Any]:
    """y = W · im2col(x) (+ b) in (*lead, O, Ho, Wo), and the columns if kept (else None)."""
    groups, count, lead = _layout(x.shape, w.shape)
    out_h, out_w = window.out_shape(*x.shape[-2:])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"conv kernel {window.kernel_h}x{window.kernel_w} does not fit "
                         f"input {x.shape[-2]}x{x.shape[-1]}")
    out, cols = products.forward(_images(x, w.shape), _weight_rows(w, groups), window,
                                 keep_columns)
    out_channels = w.shape[-4]
    out = out.reshape(_members(w.shape), out_channels, count, out_h * out_w)
    return _channels_after_images(out, bias).reshape(*lead, out_channels, out_h, out_w), cols


def _channels_after_images(products_out: Any, bias: Any) -> Any:
    """The GEMM result (P, O, N, pixels) as (P, N, O, pixels), plus b[o] or b[p, o].

    The product's rows are (member, channel), the output's order is (member, image,
    channel): one transposing copy, which adds the bias on the way (one pass over the
    output instead of two) — in a compiled loop for NumPy arrays when Numba is installed.
    """
    xp = get_array_module(products_out)
    members, channels, count, pixels = products_out.shape
    transposed = products_out.transpose(0, 2, 1, 3)
    if bias is None:
        return xp.ascontiguousarray(transposed)
    bias_rows = bias.reshape(-1, channels)  # (P', O), P' ∈ {1, P}
    out = xp.empty((members, count, channels, pixels), xp.result_type(products_out, bias))
    kernels = numba_kernels("_passes_numba") \
        if suits_compiled_pass(products_out) and bias.dtype == products_out.dtype else None
    if kernels is not None:
        kernels.channels_after_images_into(products_out, bias_rows, out)
    else:
        xp.add(transposed, bias_rows[:, None, :, None], out=out)
    return out


def _bias_grad(g: Any, bias_shape: tuple[int, ...]) -> Any:
    """db[o] = Σ g[…, o, i, j] over every image (and member, for a shared bias (O,));
    db[p, o] keeps the population axis, which leads g."""
    channel_axis = g.ndim - 3
    kept = (channel_axis,) if len(bias_shape) == 1 else (0, channel_axis)
    return g.sum(axis=tuple(a for a in range(g.ndim) if a not in kept))


def _check_bias(bias_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> None:
    out_channels = w_shape[-4]
    allowed = [(out_channels,)] + ([(w_shape[0], out_channels)] if len(w_shape) == 5 else [])
    if tuple(bias_shape) not in allowed:
        raise ValueError(f"conv bias must have shape {' or '.join(map(str, allowed))} for "
                         f"weight {w_shape}, got {bias_shape}")


def _input_grad(rows: Any, w: Any, x_shape: tuple[int, ...], window: Window) -> Any:
    """dx = col2im(Wᵀ · g) for output-gradient rows g: the transposed convolution."""
    groups, count, _ = _layout(x_shape, w.shape)
    images_shape = (groups, count, *x_shape[-3:])
    return products.input_grad(rows, _weight_rows(w, groups), images_shape, window
                               ).reshape(x_shape)


def _weight_grad(rows: Any, cols: Any, x: Any, w_shape: tuple[int, ...], window: Window
                 ) -> Any:
    """dW = g · colsᵀ, from kept columns or (cols None) by unfolding x again."""
    return products.weight_grad(rows, cols, _images(x, w_shape), window).reshape(w_shape)


def conv2d(x: Any, weight: Any, stride: int = 1, padding: int = 0, bias: Any = None
           ) -> Tensor:
    """y[o, i, j] = Σ_{c,p,q} W[o, c, p, q] · x_pad[c, s·i + p, s·j + q]  (+ b[o]).

    vjp_x = conv_transpose2d(g, W);  vjp_W[o, c, p, q] = Σ_{i,j} g[o, i, j] x_pad[c, s·i+p, s·j+q];
    vjp_b[o] = Σ_{i,j} g[o, i, j] (summed over the images). ``bias`` is (O,), or (P, O) with
    a population weight (P, O, C, kh, kw); adding it here costs no extra pass over the
    output (see :func:`_channels_after_images`).
    """
    if bias is None:
        x, weight = lift(x, weight)
    else:
        x, weight, bias = lift(x, weight, bias)
        _check_bias(bias.shape, weight.shape)
    window = Window(*weight.shape[-2:], stride, padding)
    keep_columns = weight.requires_grad and is_grad_enabled()  # only dW reads them
    out, cols = _forward(x.data, weight.data, window, keep_columns,
                         None if bias is None else bias.data)
    groups = _layout(x.shape, weight.shape)[0]

    def vjp(g: Any) -> tuple[Any, ...]:
        rows = _output_rows(g, groups, _members(weight.shape))
        gx = _input_grad(rows, weight.data, x.shape, window) if x.requires_grad else None
        gw = _weight_grad(rows, cols, x.data, weight.shape, window) \
            if weight.requires_grad else None
        if bias is None:
            return gx, gw
        return gx, gw, (_bias_grad(g, bias.shape) if bias.requires_grad else None)

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(out, parents, vjp)


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
    window = Window(kh, kw, stride, padding)
    groups = _layout(x_shape, weight.shape)[0]
    members = _members(weight.shape)
    out = _input_grad(_output_rows(y.data, groups, members), weight.data, x_shape, window)

    def vjp(g: Any) -> tuple[Any, Any]:
        gy, cols = _forward(g, weight.data, window, keep_columns=weight.requires_grad)
        gw = _weight_grad(_output_rows(y.data, groups, members), cols, g, weight.shape,
                          window) if weight.requires_grad else None
        return (gy if y.requires_grad else None), gw

    return Tensor.from_op(out, (y, weight), vjp)
