"""Reductions: sum, mean, max, logsumexp, and batch-norm statistics.

A reduction over axes ``a`` has a VJP that broadcasts ``g`` back along ``a``; we restore
the reduced axes as length-1 axes first (``_expand``) so NumPy broadcasting does the rest.
"""

from __future__ import annotations

from typing import Any

from nobound.autodiff.tensor import Tensor


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def _expand(g: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    if keepdims:
        return g
    for a in axes:
        g = g.reshape(g.shape[:a] + (1,) + g.shape[a:])
    return g


def sum(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """z = Σ_a x;  vjp = g broadcast along the summed axes a."""
    axes = _axes(axis, x.ndim)
    xp = x.xp

    def vjp(g: Any) -> tuple[Any]:
        return (xp.broadcast_to(_expand(g, axes, keepdims), x.shape),)

    return Tensor.from_op(x.data.sum(axis=axes, keepdims=keepdims), (x,), vjp)


def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """z = (1/n) Σ_a x;  vjp = g / n broadcast along a, n = number of reduced elements."""
    axes = _axes(axis, x.ndim)
    count = 1
    for a in axes:
        count *= x.shape[a]
    xp = x.xp

    def vjp(g: Any) -> tuple[Any]:
        return (xp.broadcast_to(_expand(g, axes, keepdims) / count, x.shape),)

    return Tensor.from_op(x.data.mean(axis=axes, keepdims=keepdims), (x,), vjp)


def max(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """z = max_a x;  vjp = g split evenly among the arg-max entries (a subgradient)."""
    axes = _axes(axis, x.ndim)
    out = x.data.max(axis=axes, keepdims=True)

    def vjp(g: Any) -> tuple[Any]:
        winners = x.data == out
        share = winners / winners.sum(axis=axes, keepdims=True)
        return (_expand(g, axes, keepdims) * share,)

    result = out if keepdims else out.reshape([n for i, n in enumerate(out.shape)
                                               if i not in axes])
    return Tensor.from_op(result, (x,), vjp)


def logsumexp(x: Tensor, axis: Any = -1, keepdims: bool = False) -> Tensor:
    """z = log Σ_a eˣ, computed stably as m + log Σ e^(x−m);  vjp = g · softmax_a(x)."""
    axes = _axes(axis, x.ndim)
    xp = x.xp
    shift = x.data.max(axis=axes, keepdims=True)
    shift = xp.where(xp.isfinite(shift), shift, 0)
    exps = xp.exp(x.data - shift)
    total = exps.sum(axis=axes, keepdims=True)
    out = xp.log(total) + shift

    def vjp(g: Any) -> tuple[Any]:
        return (_expand(g, axes, keepdims) * (exps / total),)

    result = out if keepdims else out.reshape([n for i, n in enumerate(out.shape)
                                               if i not in axes])
    return Tensor.from_op(result, (x,), vjp)


def batch_statistics(x: Tensor, axis: Any) -> tuple[Tensor, Tensor]:
    """Mean μ and biased variance σ² over ``axis`` (kept as length-1 axes), as BatchNorm uses.

    VJP: with n reduced elements, dμ/dx = 1/n and dσ²/dx = 2 (x − μ)/n (the μ-dependence of
    σ² vanishes because Σ (x − μ) = 0), so vjp = g_μ/n + g_σ² · 2 (x − μ)/n.
    """
    axes = _axes(axis, x.ndim)
    count = 1
    for a in axes:
        count *= x.shape[a]
    mu = x.data.mean(axis=axes, keepdims=True)
    centred = x.data - mu
    var = (centred * centred).mean(axis=axes, keepdims=True)
    mean_t = Tensor.from_op(mu, (x,), lambda g: (x.xp.broadcast_to(g / count, x.shape),))
    var_t = Tensor.from_op(var, (x,), lambda g: (g * (2.0 / count) * centred,))
    return mean_t, var_t
