"""Shape primitives: reshape, flatten, transpose, indexing, gather, concatenation, padding.

All of them are linear maps that only move entries, so each VJP moves the gradient back:
reshape ↔ reshape, transpose ↔ inverse transpose, indexing ↔ scatter-add, concatenation
↔ split, padding ↔ cropping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nobound.autodiff.ops._util import lift
from nobound.autodiff.tensor import Tensor
from nobound.backend import unwrap


def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    """z = x viewed with a new shape;  vjp = g reshaped to x's shape."""
    return Tensor.from_op(x.data.reshape(tuple(shape)), (x,), lambda g: (g.reshape(x.shape),))


def flatten(x: Tensor, start_axis: int = 1) -> Tensor:
    """Merge axes ``start_axis…`` into one (PyTorch's Flatten with start_dim)."""
    start_axis %= x.ndim
    return reshape(x, x.shape[:start_axis] + (-1,))


def transpose(x: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """z = xᵀ (axes permuted);  vjp = g permuted by the inverse permutation."""
    axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(a % x.ndim for a in axes)
    inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__))
    return Tensor.from_op(x.data.transpose(axes), (x,), lambda g: (g.transpose(inverse),))


def swapaxes(x: Tensor, a: int, b: int) -> Tensor:
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """z = x broadcast to ``shape``;  vjp = g summed over the broadcast axes."""
    from nobound.autodiff.ops._util import unbroadcast

    out = x.xp.broadcast_to(x.data, tuple(shape))
    return Tensor.from_op(out, (x,), lambda g: (unbroadcast(g, x.shape),))


def getitem(x: Tensor, index: Any) -> Tensor:
    """z = x[index] (basic or advanced indexing);  vjp = zeros with g scatter-added at index.

    Scatter-*add* (not assignment) keeps repeated indices correct.
    """
    index = _unwrap_index(index)
    xp = x.xp

    def vjp(g: Any) -> tuple[Any]:
        grad = xp.zeros(x.shape, dtype=g.dtype)
        if _is_basic(index):  # slices and integers never repeat an entry
            grad[index] = g
        else:
            _scatter_add(xp, grad, index, g)
        return (grad,)

    return Tensor.from_op(x.data[index], (x,), vjp)


def gather(x: Tensor, indices: Any, axis: int) -> Tensor:
    """z = take_along_axis(x, indices, axis);  vjp = g scatter-added along ``axis``.

    E.g. picking each sample's target logit: ``gather(logits, targets[:, None], axis=1)``.
    """
    indices = unwrap(indices)
    xp = x.xp
    axis %= x.ndim

    def vjp(g: Any) -> tuple[Any]:
        grad = xp.zeros(x.shape, dtype=g.dtype)
        grid = _open_grid(xp, g.shape)
        grid[axis] = xp.broadcast_to(indices, g.shape)
        for other in range(x.ndim):  # an axis of length 1 in x was broadcast: all go to 0
            if other != axis and x.shape[other] == 1:
                grid[other] = xp.zeros_like(grid[other])
        _scatter_add(xp, grad, tuple(grid), g)
        return (grad,)

    return Tensor.from_op(xp.take_along_axis(x.data, indices, axis=axis), (x,), vjp)


def concatenate(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """z = [x₁, x₂, …] along ``axis``;  vjp = g split back into the pieces."""
    tensors = lift(*tensors)
    xp = tensors[0].xp
    axis %= tensors[0].ndim
    sizes = [t.shape[axis] for t in tensors]
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]

    def vjp(g: Any) -> list[Any]:
        slicer = [slice(None)] * g.ndim
        pieces = []
        for start, stop in zip(offsets[:-1], offsets[1:], strict=True):
            slicer[axis] = slice(start, stop)
            pieces.append(g[tuple(slicer)])
        return pieces

    return Tensor.from_op(xp.concatenate([t.data for t in tensors], axis=axis), tensors, vjp)


def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """z = the tensors stacked along a new ``axis``;  vjp = g unstacked."""
    tensors = lift(*tensors)
    expanded = [reshape(t, t.shape[:axis % (t.ndim + 1)] + (1,) + t.shape[axis % (t.ndim + 1):])
                for t in tensors]
    return concatenate(expanded, axis=axis)


def pad(x: Tensor, widths: Sequence[tuple[int, int]]) -> Tensor:
    """Zero padding;  vjp = g cropped back to x's extent."""
    crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape, strict=True))
    return Tensor.from_op(x.xp.pad(x.data, list(widths)), (x,), lambda g: (g[crop],))


def _unwrap_index(index: Any) -> Any:
    if isinstance(index, tuple):
        return tuple(unwrap(i) for i in index)
    return unwrap(index)


def _is_basic(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, int | slice) or p is None or p is Ellipsis for p in parts)


def _open_grid(xp: Any, shape: Sequence[int]) -> list[Any]:
    """NumPy's ``indices(shape, sparse=True)``: one arange per axis, shaped to broadcast
    against the others. Built by hand because CuPy's ``indices`` has no ``sparse``."""
    ndim = len(shape)
    return [xp.arange(n).reshape((1,) * axis + (n,) + (1,) * (ndim - axis - 1))
            for axis, n in enumerate(shape)]


def _scatter_add(xp: Any, target: Any, index: Any, values: Any) -> None:
    """target[index] += values, repeated indices summed (NumPy's and CuPy's ``add.at``)."""
    xp.add.at(target, index, values)
