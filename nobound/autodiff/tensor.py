"""The Tensor: an array plus the recipe to send gradients back to its parents.

Reverse-mode autodiff in the style of micrograd, but on whole arrays. Every primitive
(see :mod:`nobound.autodiff.ops`) builds its output with :func:`Tensor.from_op`, handing
over the parents and a *vector-Jacobian product* ``vjp(g) -> (g_parent_1, g_parent_2, …)``.
:meth:`Tensor.backward` visits the graph in reverse topological order (found iteratively,
so deep graphs never hit Python's recursion limit) and *sums* the contributions when a
value feeds several ops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from nobound.backend import default_dtype, get_array_module

VJP = Callable[[Any], Sequence[Any]]


class _GradMode(threading.local):
    """Whether ops record the graph, per thread: a population evaluated by worker threads
    (``evaluate_population(workers=…)``) must not see another worker's ``enable_grad``."""

    enabled = True


_grad_mode = _GradMode()


@contextmanager
def no_grad() -> Iterator[None]:
    """Inside this block (in this thread) no graph is recorded: ops return constant Tensors."""
    previous, _grad_mode.enabled = _grad_mode.enabled, False
    try:
        yield
    finally:
        _grad_mode.enabled = previous


@contextmanager
def enable_grad() -> Iterator[None]:
    """Record the graph inside this block even within ``no_grad`` (e.g. an inner optimiser)."""
    previous, _grad_mode.enabled = _grad_mode.enabled, True
    try:
        yield
    finally:
        _grad_mode.enabled = previous


def is_grad_enabled() -> bool:
    """Whether ops called from this thread record the graph (True outside ``no_grad``)."""
    return _grad_mode.enabled


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    ``data`` is a NumPy or CuPy array; ``grad`` is filled by :meth:`backward` for tensors
    with ``requires_grad``. Arithmetic operators dispatch to the primitives in
    :mod:`nobound.autodiff.ops`.
    """

    __slots__ = ("data", "grad", "requires_grad", "parents", "vjp", "name")
    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, name: str = "",
                 dtype: Any = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        xp = get_array_module(data)
        if dtype is not None:
            data = xp.asarray(data, dtype=dtype)
        else:
            data = xp.asarray(data)
            if data.dtype.kind in "iub" and requires_grad or data.dtype.kind == "f" and \
                    data.dtype not in (np.float32, np.float64):
                data = data.astype(default_dtype())
        self.data = data
        self.grad: Any = None
        self.requires_grad = requires_grad
        self.parents: tuple[Tensor, ...] = ()
        self.vjp: VJP | None = None
        self.name = name

    @staticmethod
    def from_op(data: Any, parents: Sequence[Tensor], vjp: VJP) -> Tensor:
        """Wrap the result of a primitive; record the graph only if some parent needs it."""
        out = Tensor.__new__(Tensor)
        if isinstance(data, np.generic):  # NumPy reductions return scalars, not 0-d arrays
            data = np.asarray(data)
        out.data, out.grad, out.name = data, None, ""
        needs = _grad_mode.enabled and any(p.requires_grad for p in parents)
        out.requires_grad = needs
        out.parents = tuple(parents) if needs else ()
        out.vjp = vjp if needs else None
        return out

    # ----------------------------------------------------------------- array facts
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def xp(self) -> Any:
        return get_array_module(self.data)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{flag})"

    def numpy(self) -> np.ndarray:
        from nobound.backend import to_numpy

        return to_numpy(self.data)

    def item(self) -> float:
        return float(self.data.reshape(-1)[0]) if self.data.size == 1 else \
            _raise(ValueError(f"item() needs a single element, shape is {self.shape}"))

    def detach(self) -> Tensor:
        return Tensor(self.data)

    # ----------------------------------------------------------------- backward
    def backward(self, gradient: Any = None) -> None:
        """Accumulate d(self)/d(leaf) · gradient into ``.grad`` of every leaf that needs it.

        ``gradient`` defaults to 1 for a scalar; otherwise it must have (or broadcast to)
        this tensor's shape. Leaf gradients are *added* to any existing ``.grad`` (as in
        PyTorch), so call :func:`zero_grad` between steps. Each leaf's ``.grad`` is its own
        writable array: VJPs may return views (broadcasts, the upstream gradient itself)
        shared between several leaves, which must not alias each other or ``gradient``.
        """
        xp = self.xp
        if gradient is None:
            if self.data.size != 1:
                raise ValueError("backward() without a gradient needs a scalar output, "
                                 f"got shape {self.shape}")
            gradient = xp.ones_like(self.data)
        if isinstance(gradient, Tensor):
            gradient = gradient.data
        gradient = xp.asarray(gradient, dtype=self.dtype)
        if gradient.shape != self.shape:
            if gradient.size == 1 and self.data.size == 1:
                gradient = gradient.reshape(self.shape)
            else:
                try:
                    gradient = xp.broadcast_to(gradient, self.shape)
                except ValueError:
                    raise ValueError(f"backward(): gradient of shape {gradient.shape} does "
                                     f"not match the output shape {self.shape}") from None
        grads: dict[int, Any] = {id(self): gradient}
        for node in _reverse_topological_order(self):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node.vjp is None:  # a leaf
                if node.requires_grad:
                    g = g.astype(node.dtype)  # a fresh array, in the leaf's own dtype
                    node.grad = g if node.grad is None else node.grad + g
                continue
            for parent, parent_grad in zip(node.parents, node.vjp(g), strict=True):
                if parent_grad is None or not parent.requires_grad:
                    continue
                key = id(parent)
                grads[key] = parent_grad if key not in grads else grads[key] + parent_grad

    # ----------------------------------------------------------------- operators
    def __add__(self, other: Any) -> Tensor:
        return _ops().add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _ops().add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _ops().sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _ops().sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _ops().mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _ops().mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _ops().div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ops().div(other, self)

    def __neg__(self) -> Tensor:
        return _ops().neg(self)

    def __matmul__(self, other: Any) -> Tensor:
        return _ops().matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _ops().matmul(other, self)

    def __getitem__(self, index: Any) -> Tensor:
        return _ops().getitem(self, index)

    def __pow__(self, exponent: float) -> Tensor:
        if exponent == 2:
            return _ops().square(self)
        if exponent == 0.5:
            return _ops().sqrt(self)
        raise NotImplementedError("only ** 2 and ** 0.5 are primitives")

    # convenience methods mirroring the primitives
    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops().sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops().mean(self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops().max(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return _ops().reshape(self, shape)

    def transpose(self, *axes: int) -> Tensor:
        return _ops().transpose(self, axes or None)

    def relu(self) -> Tensor:
        return _ops().relu(self)

    def abs(self) -> Tensor:
        return _ops().abs(self)

    def exp(self) -> Tensor:
        return _ops().exp(self)

    def log(self) -> Tensor:
        return _ops().log(self)


def _raise(error: Exception) -> Any:
    raise error


def _ops() -> Any:
    from nobound.autodiff import ops

    return ops


def _reverse_topological_order(root: Tensor) -> list[Tensor]:
    """Nodes reachable from ``root``, each after every node that uses it (iterative DFS)."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in node.parents:
            if id(parent) not in visited:
                stack.append((parent, False))
    order.reverse()
    return order


def as_tensor(value: Any, like: Tensor | None = None) -> Tensor:
    """Wrap arrays and Python numbers as constant Tensors (on ``like``'s device/dtype)."""
    if isinstance(value, Tensor):
        return value
    if like is not None:
        return Tensor(like.xp.asarray(value, dtype=like.dtype))
    return Tensor(value)


def zero_grad(tensors: Sequence[Tensor]) -> None:
    for tensor in tensors:
        tensor.grad = None
