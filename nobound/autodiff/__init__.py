"""Reverse-mode automatic differentiation on NumPy/CuPy arrays."""

from nobound.autodiff import ops
from nobound.autodiff.tensor import (
    Tensor,
    as_tensor,
    enable_grad,
    is_grad_enabled,
    no_grad,
    zero_grad,
)

__all__ = ["Tensor", "as_tensor", "enable_grad", "is_grad_enabled", "no_grad", "ops",
           "zero_grad"]
