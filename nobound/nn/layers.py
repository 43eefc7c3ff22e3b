"""Parameterised layers: Linear and Conv2d, each accepting a population axis.

Shapes (P = population size, B = batch):

=========  =====================  ======================  ==========================
layer      weight                 input                   output
=========  =====================  ======================  ==========================
Linear     (out, in) | (P,out,in) (B, in) | (P, B, in)    (B, out) | (P, B, out)
Conv2d     (O,C,kh,kw) | (P,…)    (B,C,H,W) | (P,B,C,H,W) (B,O,Ho,Wo) | (P,B,O,Ho,Wo)
=========  =====================  ======================  ==========================

A shared input (no P axis) meets a population of weights by broadcasting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import default_dtype
from nobound.nn.module import Module


def population_bias(bias: Tensor, base_ndim: int, trailing: int) -> Tensor:
    """Reshape a (P, n) bias to (P, 1, n, 1…) so it broadcasts over the batch axis.

    ``base_ndim`` is the bias's dimensionality without population (1); ``trailing`` is the
    number of spatial axes after the feature axis (2 for convolutions, 0 for Linear).
    """
    if bias.ndim == base_ndim:
        return bias.reshape(bias.shape + (1,) * trailing) if trailing else bias
    return bias.reshape((bias.shape[0], 1, bias.shape[1]) + (1,) * trailing)


class Linear(Module):
    """y = x Wᵀ + b."""

    parameter_names = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: Any = None) -> None:
        super().__init__()
        dtype = dtype or default_dtype()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Tensor(np.zeros((out_features, in_features), dtype), requires_grad=True)
        self.bias = Tensor(np.zeros(out_features, dtype), requires_grad=True) if bias else None
        if not bias:
            self.parameter_names = ("weight",)

    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        p = self.resolve(params)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects {self.in_features} input features, "
                             f"got shape {x.shape}")
        out = ops.matmul(x, ops.swapaxes(p["weight"], -1, -2))
        if "bias" in p:
            out = out + population_bias(p["bias"], 1, 0)
        return out

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"


class Conv2d(Module):
    """y = W ⋆ x + b (cross-correlation with stride and zero padding, as PyTorch)."""

    parameter_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, padding: int = 0, bias: bool = True,
                 dtype: Any = None) -> None:
        super().__init__()
        dtype = dtype or default_dtype()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = Tensor(np.zeros(shape, dtype), requires_grad=True)
        self.bias = Tensor(np.zeros(out_channels, dtype), requires_grad=True) if bias else None
        if not bias:
            self.parameter_names = ("weight",)

    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        p = self.resolve(params)
        weight, bias = p["weight"], p.get("bias")
        if bias is not None and bias.ndim > weight.ndim - 3:
            # members' biases with one shared weight: the bias alone adds the population axis
            return ops.conv2d(x, weight, self.stride, self.padding) + \
                population_bias(bias, 1, 2)
        return ops.conv2d(x, weight, self.stride, self.padding, bias)  # bias in the same pass

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) → (O, Ho, Wo)."""
        _, h, w = input_shape
        k, s, pad = self.kernel_size, self.stride, self.padding
        return (self.out_channels, ops.output_size(h, k, s, pad), ops.output_size(w, k, s, pad))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")
