"""Contractions: matmul and einsum.

For ``Z = X Y`` (batched, with NumPy broadcasting of the leading axes) the VJPs are
``dX = G Yᵀ`` and ``dY = Xᵀ G``, each un-broadcast to its operand. This is what lets a
weight of shape (P, out, in) meet an input of shape (B, in) and give (P, B, out): the
population axis is a broadcast batch axis, and its gradient sums back correctly.
"""

from __future__ import annotations

from typing import Any

from nobound.autodiff.ops._util import lift, unbroadcast
from nobound.autodiff.tensor import Tensor


def _product(a: Any, b: Any) -> Any:
    """a @ b with NumPy broadcasting; one matrix product over all of a's rows when b is a
    single matrix (every leading axis of length 1) and a has at least as many axes.

    The array libraries multiply a stack of matrices one matrix at a time: the rows of
    (2, 128, 9, 512) coefficients times one (512, 288) weight run as 256 products of 9
    rows each instead of one product of 2,304 rows (cnn5's CROWN-IBP back-substitution;
    the gain is in docs/benchmarks.md). Each entry is the same dot product either way.
    """
    if a.ndim > 2 and a.ndim >= b.ndim and all(d == 1 for d in b.shape[:-2]):
        rows = a.reshape(-1, a.shape[-1]) @ b.reshape(b.shape[-2:])
        return rows.reshape(a.shape[:-1] + rows.shape[-1:])
    return a @ b


def matmul(x: Any, y: Any) -> Tensor:
    """Z = X @ Y;  vjp_X = G @ Yᵀ,  vjp_Y = Xᵀ @ G (operands of at least 2 dimensions)."""
    x, y = lift(x, y)
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"matmul needs operands with ≥ 2 dims, got {x.shape} and {y.shape}")
    xp = x.xp

    def vjp(g: Any) -> tuple[Any, Any]:
        gx = unbroadcast(_product(g, y.data.swapaxes(-1, -2)), x.shape) \
            if x.requires_grad else None
        gy = unbroadcast(xp.matmul(x.data.swapaxes(-1, -2), g), y.shape) \
            if y.requires_grad else None
        return gx, gy

    return Tensor.from_op(_product(x.data, y.data), (x, y), vjp)


def einsum(subscripts: str, *operands: Any) -> Tensor:
    """Explicit-output einsum ``"ab,bc->ac"`` (no ellipsis, no index repeated in an operand).

    The VJP for operand k is itself an einsum: contract g (indices of the output) with the
    other operands onto operand k's indices; indices only operand k carries were summed in
    the forward pass, so the result is broadcast along them.
    """
    if "->" not in subscripts or "." in subscripts:
        raise ValueError("einsum needs explicit '->' output and no ellipsis")
    inputs_spec, output_spec = subscripts.replace(" ", "").split("->")
    specs = inputs_spec.split(",")
    tensors = lift(*operands)
    if len(specs) != len(tensors):
        raise ValueError(f"einsum '{subscripts}' expects {len(specs)} operands")
    for spec, tensor in zip(specs, tensors, strict=True):
        if len(set(spec)) != len(spec) or len(spec) != tensor.ndim:
            raise ValueError(f"bad einsum operand spec {spec!r} for shape {tensor.shape}")
    xp = tensors[0].xp
    out = xp.einsum(subscripts, *(t.data for t in tensors), optimize=True)

    def vjp(g: Any) -> list[Any]:
        grads = []
        for k, (spec, tensor) in enumerate(zip(specs, tensors, strict=True)):
            if not tensor.requires_grad:
                grads.append(None)
                continue
            others = [(s, t.data) for j, (s, t) in enumerate(zip(specs, tensors, strict=True))
                      if j != k]
            available = set(output_spec).union(*(s for s, _ in others))
            kept = "".join(c for c in spec if c in available)
            expr = ",".join([output_spec] + [s for s, _ in others]) + "->" + kept
            partial = xp.einsum(expr, g, *(a for _, a in others), optimize=True)
            shape = [tensor.shape[spec.index(c)] if c in kept else 1 for c in spec]
            grads.append(xp.broadcast_to(partial.reshape(shape), tensor.shape))
        return grads

    return Tensor.from_op(out, tensors, vjp)
