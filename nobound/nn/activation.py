"""Parameter-free layers: ReLU, Sigmoid, Tanh and Flatten."""

from __future__ import annotations

from collections.abc import Mapping

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.nn.module import Module


class ReLU(Module):
    """y = max(x, 0), elementwise."""

    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        return ops.relu(x)


class Sigmoid(Module):
    """y = σ(x) = 1 / (1 + e⁻ˣ), elementwise;  vjp = g · y (1 − y).

    Computed as e^{min(x,0)} / (1 + e^{−|x|}), which overflows for no x.
    """

    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        xp = x.xp
        out = xp.exp(xp.minimum(x.data, 0)) / (1 + xp.exp(-xp.abs(x.data)))
        return Tensor.from_op(out, (x,), lambda g: (g * out * (1 - out),))


class Tanh(Module):
    """y = tanh x, elementwise;  vjp = g · (1 − y²)."""

    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        out = x.xp.tanh(x.data)
        return Tensor.from_op(out, (x,), lambda g: (g * (1 - out * out),))


class Flatten(Module):
    """Merge the last three axes (C, H, W) into one; keeps any batch/population axes.

    Unlike PyTorch's ``Flatten(start_dim=1)`` this counts from the end, so an input of
    shape (P, B, C, H, W) becomes (P, B, C·H·W) — the population axis survives.
    """

    def __init__(self, feature_dims: int = 3) -> None:
        super().__init__()
        self.feature_dims = feature_dims

    def forward(self, x: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        if x.ndim <= self.feature_dims:
            raise ValueError(f"Flatten needs a batch axis before {self.feature_dims} feature "
                             f"axes, got shape {x.shape}")
        return ops.reshape(x, x.shape[:-self.feature_dims] + (-1,))
