"""What a relaxation returns: numbers (:class:`BoundResult`) and, on request, the symbolic
linear bounds (eq. 4) behind them (:class:`LinearBounds`).

DeepPoly/CROWN describe a node v by two affine functions of an earlier node x (usually
the network input):

    A_l x + b_l  ≤  v  ≤  A_u x + b_u        for every x in the region.            (4)

Their concretisation over a box (eq. 2) is :func:`nobound.bounds.deeppoly.concretise`,
which :meth:`LinearBounds.concretize` calls.

Shapes: A is (B, R, *x_shape) — or (P, B, R, *x_shape) for a population — with R the
bounded rows (neurons of v, or rows of a specification); b is (B, R) or (P, B, R).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import to_numpy
from nobound.bounds.regions import Box


@dataclass
class LinearBounds:
    """A_l x + b_l ≤ v ≤ A_u x + b_u (eq. 4) for all x in the region they were built for.

    ``reference`` is the index of the layer whose *output* x is, or None for the network
    input; ``input_shape`` is the feature shape of x.
    """

    A_l: Tensor  # noqa: N815 - the paper's notation
    b_l: Tensor
    A_u: Tensor  # noqa: N815
    b_u: Tensor
    input_shape: tuple[int, ...]
    reference: int | None = None

    @property
    def rows(self) -> int:
        return self.b_l.shape[-1]

    def concretize(self, box: Box) -> tuple[Tensor, Tensor]:
        """Constant bounds (lower, upper), each (B, R) or (P, B, R), over ``box`` (eq. 2).

        ``box`` holds x: (B, *input_shape), or (P, B, *input_shape) per population member.
        """
        from nobound.bounds.deeppoly import concretise
        from nobound.bounds.rows import DenseRows

        feature_ndim = len(self.input_shape)
        if tuple(box.shape[box.lower.ndim - feature_ndim:]) != self.input_shape:
            raise ValueError(f"box of shape {box.shape} does not match the bounds' input "
                             f"shape {self.input_shape}")
        population = self.A_l.ndim == feature_ndim + 3

        def side(A: Tensor, b: Tensor, name: str) -> Tensor:  # noqa: N803
            lead = A.shape[:1] if population else (1,)
            rows = DenseRows(A.reshape(lead + (1,) + A.shape[1 if population else 0:]))
            bound = concretise(rows, b.reshape(lead + (1,) + b.shape[-2:]), box)[name]
            return bound if population else bound.reshape(bound.shape[1:])

        return side(self.A_l, self.b_l, "lower"), side(self.A_u, self.b_u, "upper")

    def evaluate(self, x: Any) -> tuple[Tensor, Tensor]:
        """(A_l x + b_l, A_u x + b_u) at points x of shape (B, *input_shape)."""
        x = x if isinstance(x, Tensor) else Tensor(x)
        return self.concretize(Box(x, x))

    @staticmethod
    def from_rows(pieces: list[tuple[Tensor, Tensor | None]], batch: int,
                  input_shape: tuple[int, ...], reference: int | None = None) -> LinearBounds:
        """Join chunks of back-substituted rows, coefficients (P', S, B', r, *x) and biases
        (P', S, B', r) or None, into LinearBounds (P', B, R, *x): the side axis split
        (S = 1 serves both sides), B' broadcast to B."""
        def join(tensors: list[Tensor]) -> Tensor:
            return tensors[0] if len(tensors) == 1 else ops.concatenate(tensors, axis=3)

        A = join([A for A, _ in pieces])  # noqa: N806
        b = None if pieces[0][1] is None else join([b for _, b in pieces])
        parts = []
        for position in (0, 1):
            coefficients = A[:, min(position, A.shape[1] - 1)]
            shape = (coefficients.shape[0], batch) + coefficients.shape[2:]
            coefficients = ops.broadcast_to(coefficients, shape)
            bias = Tensor(A.xp.zeros(shape[:3], dtype=A.dtype)) if b is None else \
                b[:, min(position, b.shape[1] - 1)]
            parts += [coefficients, ops.broadcast_to(bias, (bias.shape[0], *shape[1:3]))]
        return LinearBounds(*parts, tuple(input_shape), reference)

    def to_dense(self) -> dict[str, np.ndarray]:
        """NumPy arrays with the input flattened: A_* (…, B, R, n), b_* (…, B, R)."""
        n = prod(self.input_shape)
        out = {}
        for name in ("A_l", "A_u"):
            array = to_numpy(getattr(self, name).data)
            out[name] = array.reshape(array.shape[:array.ndim - len(self.input_shape)] + (n,))
        out["b_l"] = to_numpy(self.b_l.data)
        out["b_u"] = to_numpy(self.b_u.data)
        return out

    def save(self, path: str | Path) -> Path:
        """Write A_l, b_l, A_u, b_u (dense, input flattened) to ``.npz`` or ``.h5``.

        The feature shape of x and the reference layer (−1 = network input) are stored too.
        """
        path = Path(path)
        arrays = self.to_dense()
        meta = {"input_shape": np.asarray(self.input_shape, dtype=np.int64),
                "reference": np.asarray(-1 if self.reference is None else self.reference)}
        if path.suffix == ".npz":
            np.savez(path, **arrays, **meta)
        elif path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "w") as handle:
                for name, array in {**arrays, **meta}.items():
                    handle.create_dataset(name, data=array)
        else:
            raise ValueError(f"save LinearBounds as .npz or .h5, not {path.suffix!r}")
        return path

    @staticmethod
    def load(path: str | Path) -> LinearBounds:
        """Read bounds written by :meth:`save` (NumPy arrays, A_* reshaped to x's shape)."""
        path = Path(path)
        if path.suffix == ".npz":
            with np.load(path) as data:
                arrays = {name: data[name] for name in data.files}
        else:
            import h5py

            with h5py.File(path, "r") as handle:
                arrays = {name: handle[name][()] for name in handle}
        input_shape = tuple(int(n) for n in arrays["input_shape"])
        reference = int(arrays["reference"])

        def unflatten(array: np.ndarray) -> Tensor:
            return Tensor(array.reshape(array.shape[:-1] + input_shape))

        return LinearBounds(unflatten(arrays["A_l"]), Tensor(arrays["b_l"]),
                            unflatten(arrays["A_u"]), Tensor(arrays["b_u"]), input_shape,
                            None if reference < 0 else reference)


@dataclass
class BoundResult:
    """Bounds of C · f(x) (or of f(x) without a specification) over the region.

    ``lower``/``upper``: (B, K) or (P, B, K). ``intermediate``: {index of a ReLU layer:
    (lower, upper) of that ReLU's input}, each (B, *neurons) or (P, B, *neurons).
    ``linear``: LinearBounds of the output rows w.r.t. the input (``return_linear``).
    ``tangent_slopes``: alpha-CROWN's {index of a Sigmoid/Tanh layer: (slopes of its lower
    lines, of its upper lines)} behind ``lower``, each (B, K, *neurons) — what a proof
    records for the checker, which derives rigorous intercepts for any slope.
    Inside the package every field carries a population axis P' (1 or P).
    """

    lower: Tensor
    upper: Tensor
    method: str
    intermediate: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    linear: LinearBounds | None = None
    tangent_slopes: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
