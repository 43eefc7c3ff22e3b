"""Max pooling over square windows of (…, C, H, W) data (any leading batch/population axes).

    y[…, c, i, j] = max over 0 ≤ a, b < k of x[…, c, i·s + a, j·s + b]

with ``padding`` rows/columns of −∞ around the image (they never win). The forward pass
takes the maximum over the k² strided slices of the image, one slice per window offset
(a, b), so windows may overlap (s < k). The VJP sends g to one arg-max of each window — the
first offset that attains the maximum, a subgradient — by adding g into the same strided
slices (each offset's slice is added separately, so overlapping windows accumulate).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nobound.autodiff.ops.conv import output_size
from nobound.autodiff.tensor import Tensor
from nobound.nn.module import Module


def window_slices(kernel_size: int, stride: int, height: int, width: int
                  ) -> list[tuple[slice, slice]]:
    """The (rows, columns) slice of every window offset (a, b), in row-major order."""
    out_h = (height - kernel_size) // stride + 1
    out_w = (width - kernel_size) // stride + 1
    return [(slice(a, a + stride * (out_h - 1) + 1, stride),
             slice(b, b + stride * (out_w - 1) + 1, stride))
            for a in range(kernel_size) for b in range(kernel_size)]


class MaxPool2d(Module):
    """Max pooling (see the module doc); ``kernel_size``, ``stride`` (default: the kernel
    size) and symmetric ``padding`` as PyTorch's ``MaxPool2d``."""

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0) -> None:
        super().__init__()
        self.kernel_size = int(kernel_size)
        self.stride = int(stride if stride is not None else kernel_size)
        self.padding = int(padding)
        if self.padding * 2 > self.kernel_size:
            raise ValueError("padding must be at most half the kernel size")

    def padded(self, data: Any) -> Any:
        """``data`` with ``padding`` rows and columns of −∞ (a copy only when padding)."""
        if not self.padding:
            return data
        xp = Tensor(data).xp
        p = self.padding
        widths = [(0, 0)] * (data.ndim - 2) + [(p, p), (p, p)]
        return xp.pad(data, widths, constant_values=-xp.inf)

    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        xp = x.xp
        data = self.padded(x.data)
        slices = window_slices(self.kernel_size, self.stride, *data.shape[-2:])
        out = data[(..., *slices[0])]
        for rows, cols in slices[1:]:
            out = xp.maximum(out, data[..., rows, cols])

        def vjp(g: Any) -> tuple[Any]:
            grad = xp.zeros_like(data)
            unassigned = xp.ones(out.shape, dtype=bool)
            for rows, cols in slices:
                wins = unassigned & (data[..., rows, cols] == out)
                grad[..., rows, cols] += xp.where(wins, g, 0)
                unassigned &= ~wins
            p = self.padding
            return (grad[..., p:grad.shape[-2] - p, p:grad.shape[-1] - p] if p else grad,)

        return Tensor.from_op(out, (x,), vjp)

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) → (C, Ho, Wo)."""
        c, h, w = input_shape
        k, s, p = self.kernel_size, self.stride, self.padding
        return (c, output_size(h, k, s, p), output_size(w, k, s, p))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
