"""Elementwise primitives. Each docstring states the vector-Jacobian product (VJP).

For ``z = f(x, y)`` with upstream gradient ``g = dL/dz`` the VJPs are
``dL/dx = g * ∂f/∂x`` and ``dL/dy = g * ∂f/∂y``, un-broadcast to the operand shapes.
"""

from __future__ import annotations

from typing import Any

from nobound.autodiff.ops._compiled import numba_kernels, suits_compiled_pass
from nobound.autodiff.ops._util import lift, unbroadcast
from nobound.autodiff.tensor import Tensor
from nobound.backend import unwrap


def add(x: Any, y: Any) -> Tensor:
    """z = x + y;  vjp_x = g,  vjp_y = g."""
    x, y = lift(x, y)

    def vjp(g: Any) -> tuple[Any, Any]:
        return unbroadcast(g, x.shape), unbroadcast(g, y.shape)

    return Tensor.from_op(x.data + y.data, (x, y), vjp)


def sub(x: Any, y: Any) -> Tensor:
    """z = x − y;  vjp_x = g,  vjp_y = −g."""
    x, y = lift(x, y)

    def vjp(g: Any) -> tuple[Any, Any]:
        return unbroadcast(g, x.shape), unbroadcast(-g, y.shape)

    return Tensor.from_op(x.data - y.data, (x, y), vjp)


def mul(x: Any, y: Any) -> Tensor:
    """z = x · y;  vjp_x = g · y,  vjp_y = g · x."""
    x, y = lift(x, y)

    def vjp(g: Any) -> tuple[Any, Any]:
        gx = unbroadcast(g * y.data, x.shape) if x.requires_grad else None
        gy = unbroadcast(g * x.data, y.shape) if y.requires_grad else None
        return gx, gy

    return Tensor.from_op(x.data * y.data, (x, y), vjp)


def div(x: Any, y: Any) -> Tensor:
    """z = x / y;  vjp_x = g / y,  vjp_y = −g · x / y²."""
    x, y = lift(x, y)
    out = x.data / y.data

    def vjp(g: Any) -> tuple[Any, Any]:
        gx = unbroadcast(g / y.data, x.shape) if x.requires_grad else None
        gy = unbroadcast(-g * out / y.data, y.shape) if y.requires_grad else None
        return gx, gy

    return Tensor.from_op(out, (x, y), vjp)


def neg(x: Tensor) -> Tensor:
    """z = −x;  vjp = −g."""
    return Tensor.from_op(-x.data, (x,), lambda g: (-g,))


def exp(x: Tensor) -> Tensor:
    """z = eˣ;  vjp = g · z."""
    out = x.xp.exp(x.data)
    return Tensor.from_op(out, (x,), lambda g: (g * out,))


def log(x: Tensor) -> Tensor:
    """z = ln x;  vjp = g / x."""
    return Tensor.from_op(x.xp.log(x.data), (x,), lambda g: (g / x.data,))


def square(x: Tensor) -> Tensor:
    """z = x²;  vjp = 2 g x."""
    return Tensor.from_op(x.data * x.data, (x,), lambda g: (2 * g * x.data,))


def sqrt(x: Tensor) -> Tensor:
    """z = √x;  vjp = g / (2 z)."""
    out = x.xp.sqrt(x.data)
    return Tensor.from_op(out, (x,), lambda g: (g / (2 * out),))


def relu(x: Tensor) -> Tensor:
    """z = max(x, 0);  vjp = g · 1[x > 0] (the subgradient 0 is taken at x = 0).

    1[x > 0] = 1[z > 0] is formed from z inside the VJP, so a forward pass without
    gradients makes one pass over the data and stores no mask. Large NumPy arrays take
    the compiled loop of :mod:`._passes_numba` when Numba is installed (same values).
    """
    data = x.data
    kernels = numba_kernels("_passes_numba") if suits_compiled_pass(data) else None
    if kernels is not None:
        out = x.xp.empty_like(data)
        kernels.relu_into(data, out)
    else:
        out = x.xp.maximum(data, 0)
    return Tensor.from_op(out, (x,), lambda g: (g * (out > 0),))



def abs(x: Tensor) -> Tensor:  # noqa: A001 - mirrors numpy's name
    """z = |x|;  vjp = g · sign(x) (0 at x = 0)."""
    return Tensor.from_op(x.xp.abs(x.data), (x,), lambda g: (g * x.xp.sign(x.data),))


def where(condition: Any, x: Any, y: Any) -> Tensor:
    """z = x where condition else y;  vjp_x = g · c,  vjp_y = g · (1 − c).

    ``condition`` is a boolean array (or Tensor); it carries no gradient.
    """
    condition = unwrap(condition)
    x, y = lift(x, y)
    xp = x.xp

    def vjp(g: Any) -> tuple[Any, Any]:
        zero = xp.zeros((), dtype=g.dtype)
        gx = unbroadcast(xp.where(condition, g, zero), x.shape) if x.requires_grad else None
        gy = unbroadcast(xp.where(condition, zero, g), y.shape) if y.requires_grad else None
        return gx, gy

    return Tensor.from_op(xp.where(condition, x.data, y.data), (x, y), vjp)


def maximum(x: Any, y: Any) -> Tensor:
    """z = max(x, y);  the gradient goes to x where x ≥ y, else to y."""
    x, y = lift(x, y)
    return where(x.data >= y.data, x, y)


def minimum(x: Any, y: Any) -> Tensor:
    """z = min(x, y);  the gradient goes to x where x ≤ y, else to y."""
    x, y = lift(x, y)
    return where(x.data <= y.data, x, y)


def clamp(x: Tensor, low: Any = None, high: Any = None) -> Tensor:
    """z = min(max(x, low), high);  vjp = g · 1[low ≤ x ≤ high] (bounds may be Tensors)."""
    if low is not None:
        x = maximum(x, low)
    if high is not None:
        x = minimum(x, high)
    return x


def positive_part(x: Tensor) -> Tensor:
    """x⁺ = max(x, 0), the same map as :func:`relu`, named as in concretisation."""
    return relu(x)


def negative_part(x: Tensor) -> Tensor:
    """x⁻ = min(x, 0);  vjp = g · 1[x < 0]."""
    out = x.xp.minimum(x.data, 0)
    return Tensor.from_op(out, (x,), lambda g: (g * (out < 0),))
