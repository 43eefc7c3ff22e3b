"""A nobound model as PyTorch layers, for the PyTorch side of ``bounds_speed.py``.

The relaxations walk a chain of steps (see ``nobound/bounds/steps.py``); here each step is
a :class:`TorchLayer` holding PyTorch tensors and offering the same four operations,

    forward(v)      = W v + b          (centres, points)
    forward_abs(r)  = |W| r            (radii; eq. 3)
    linear(g)       = W g              (zonotope error terms, HBox)
    backward(A)     = A W              (back-substitution of row coefficients; eq. 4)
    bias_term(A)    = A b              (the constant collected on the way)

on tensors with any number of leading axes. ``backward`` of a convolution is
``torch.nn.functional.conv_transpose2d`` (oneDNN on this CPU), never an unrolled matrix.
BatchNorm (eval mode, running statistics) and Normalize are per-channel affine maps
y = s ⊙ v + t with s = γ / √(σ² + ε), t = β − μ s, and s = 1/std, t = −mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional

from nobound.nn.activation import Flatten, ReLU
from nobound.nn.layers import Conv2d, Linear
from nobound.nn.normalization import BatchNorm, Normalize


@dataclass
class TorchLayer:
    """One step: ``kind`` ∈ conv, linear, channel (per-channel affine), flatten, relu."""

    kind: str
    index: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    stride: int = 1
    padding: int = 0

    @property
    def dense(self) -> bool:
        return self.kind in ("conv", "linear")

    def _lead(self, tensor: torch.Tensor, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(tensor.shape[:tensor.dim() - len(shape)])

    def _channel_view(self, tensor: torch.Tensor) -> torch.Tensor:
        """(C,) → (C, 1, 1) for images, (C,) for vectors."""
        return tensor.reshape((-1,) + (1,) * (len(self.input_shape) - 1))

    def _apply(self, v: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor | None) -> torch.Tensor:
        lead = self._lead(v, self.input_shape)
        if self.kind == "flatten":
            return v.reshape(lead + self.output_shape)
        if self.kind == "channel":
            out = v * self._channel_view(weight)
            return out if bias is None else out + self._channel_view(bias)
        if self.kind == "linear":
            return functional.linear(v, weight, bias)
        out = functional.conv2d(v.reshape((-1,) + self.input_shape), weight, bias,
                                self.stride, self.padding)
        return out.reshape(lead + self.output_shape)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self._apply(v, self.weight, self.bias)

    def linear(self, v: torch.Tensor) -> torch.Tensor:
        return self._apply(v, self.weight, None)

    def forward_abs(self, v: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.abs()
        return self._apply(v, weight, None)

    def backward(self, coefficients: torch.Tensor) -> torch.Tensor:
        lead = self._lead(coefficients, self.output_shape)
        if self.kind == "flatten":
            return coefficients.reshape(lead + self.input_shape)
        if self.kind == "channel":
            return coefficients * self._channel_view(self.weight)
        if self.kind == "linear":
            return coefficients @ self.weight
        height, width = self.input_shape[1:]
        out_height, out_width = self.output_shape[1:]
        kernel_h, kernel_w = self.weight.shape[2:]
        # output_padding recovers the input size a strided convolution rounded away
        extra = (height - ((out_height - 1) * self.stride - 2 * self.padding + kernel_h),
                 width - ((out_width - 1) * self.stride - 2 * self.padding + kernel_w))
        out = functional.conv_transpose2d(coefficients.reshape((-1,) + self.output_shape),
                                          self.weight, None, self.stride, self.padding, extra)
        return out.reshape(lead + self.input_shape)

    def bias_term(self, coefficients: torch.Tensor) -> torch.Tensor | None:
        """A b: (…, *output) → (…)."""
        if self.kind in ("flatten", "relu") or self.bias is None:
            return None
        if self.kind == "linear":
            return coefficients @ self.bias
        per_channel = coefficients.sum(dim=tuple(range(-len(self.output_shape) + 1, 0))) \
            if len(self.output_shape) > 1 else coefficients
        return per_channel @ self.bias


def _tensor(array: Any) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array, dtype=np.float32)))


def torch_layers(model: Any, input_shape: tuple[int, ...]) -> list[TorchLayer]:
    """The steps of a nobound ``Sequential`` (BatchNorm in eval mode) as TorchLayers."""
    layers: list[TorchLayer] = []
    shape = tuple(input_shape)
    for index, layer in enumerate(model.layers):
        if isinstance(layer, ReLU):
            layers.append(TorchLayer("relu", index, shape, shape))
        elif isinstance(layer, Flatten):
            layers.append(TorchLayer("flatten", index, shape, (prod(shape),)))
        elif isinstance(layer, Linear):
            bias = None if layer.bias is None else _tensor(layer.bias.data)
            layers.append(TorchLayer("linear", index, shape, (layer.out_features,),
                                     _tensor(layer.weight.data), bias))
        elif isinstance(layer, Conv2d):
            bias = None if layer.bias is None else _tensor(layer.bias.data)
            layers.append(TorchLayer("conv", index, shape, layer.output_shape(shape),
                                     _tensor(layer.weight.data), bias, layer.stride,
                                     layer.padding))
        elif isinstance(layer, BatchNorm):
            if layer.training:
                raise ValueError("the PyTorch reference bounds BatchNorm in eval mode only")
            scale = _tensor(layer.weight.data) / torch.sqrt(_tensor(layer.running_var)
                                                            + layer.eps)
            shift = _tensor(layer.bias.data) - _tensor(layer.running_mean) * scale
            layers.append(TorchLayer("channel", index, shape, shape, scale, shift))
        elif isinstance(layer, Normalize):
            std, mean = _tensor(layer.std), _tensor(layer.mean)
            layers.append(TorchLayer("channel", index, shape, shape, 1.0 / std, -mean / std))
        else:
            raise TypeError(f"no PyTorch counterpart for layer {index}: {layer!r}")
        shape = layers[-1].output_shape
    return layers


def margin_spec(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """C (B, classes − 1, classes): rows e_t − e_j for j ≠ t in ascending j."""
    eye = torch.eye(classes)
    spec = eye[labels].unsqueeze(1) - eye.unsqueeze(0)
    keep = ~functional.one_hot(labels, classes).bool()
    return spec[keep].reshape(len(labels), classes - 1, classes)


def fold_spec(layer: TorchLayer, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W' = C W (B, K, in) and b' = C b (B, K) of the last Linear layer."""
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.output_shape[0])
    return spec @ layer.weight, spec @ bias
