"""Helpers shared by the primitives: coercion to Tensors and un-broadcasting gradients."""

from __future__ import annotations

from numbers import Number
from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor


def lift(*values: Any) -> tuple[Tensor, ...]:
    """Turn numbers and arrays into constant Tensors matching the first Tensor given.

    Scalars (Python or NumPy numbers) take the floating dtype of the Tensor they meet, so
    ``x * 2`` and ``x * np.int64(2)`` stay float32 (NumPy would promote the latter to float64).
    Arrays keep their dtype and follow NumPy's promotion rules.
    """
    like = next((v for v in values if isinstance(v, Tensor)), None)
    out = []
    for value in values:
        if isinstance(value, Tensor):
            out.append(value)
        elif like is not None:
            is_scalar = isinstance(value, Number | np.generic) and not isinstance(value, complex)
            if is_scalar and like.dtype.kind == "f":
                out.append(Tensor(like.xp.asarray(value, dtype=like.dtype)))
            else:
                out.append(Tensor(like.xp.asarray(value)))
        else:
            out.append(Tensor(value))
    return tuple(out)


def unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` down to ``shape``: the VJP of NumPy broadcasting.

    Broadcasting copies a value along new leading axes and along axes of length 1, so its
    adjoint sums over exactly those axes. Every binary primitive calls this once.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)
