"""Symbolic linear bounds (eq. 4) and their concretisation over a box (eq. 2).

DeepPoly/CROWN describe a node v by two affine functions of an earlier node x (usually
the network input):

    A_l x + b_l  ≤  v  ≤  A_u x + b_u        for every x in the region.            (4)

Over a box l ≤ x ≤ u the best constant bounds follow coordinate by coordinate — take the
box end that makes each term smallest (largest):

    v ≥ A_l⁺ l + A_l⁻ u + b_l  =  A_l c − |A_l| r + b_l,
    v ≤ A_u⁺ u + A_u⁻ l + b_u  =  A_u c + |A_u| r + b_u,                          (2)

with A⁺ = max(A, 0), A⁻ = min(A, 0), centre c = (l + u)/2, radius r = (u − l)/2. The
centre/radius form needs two matrix-vector products per side and no sign masks.

Shapes: A is (B, R, *x_shape) — or (P, B, R, *x_shape) for a population — with R the
bounded rows (neurons of v, or rows of a specification); b is (B, R) or (P, B, R).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from nobound.autodiff import ops
from nobound.autodiff.tensor import Tensor
from nobound.backend import to_numpy
from nobound.bounds.regions import Box


def flat_column(tensor: Tensor, feature_ndim: int, insert_axes: tuple[int, ...] = ()) -> Tensor:
    """(*lead, *features) → (*lead with length-1 axes inserted, n, 1) for matrix products."""
    lead = list(tensor.shape[:tensor.ndim - feature_ndim])
    for axis in insert_axes:
        lead.insert(axis, 1)
    return tensor.reshape((*lead, -1, 1))


def bound_coefficients(coefficients: Tensor, bias: Tensor | None, center_column: Tensor,
                       radius_column: Tensor, feature_ndim: int, sign: float) -> Tensor:
    """A c + b + sign · |A| r (eq. 2): the lower bound for sign −1, the upper for +1.

    ``coefficients`` is (*lead, R, *features); the columns are (…, n, 1) and broadcast
    against ``lead``. Returns (*lead, R).
    """
    lead_rows = coefficients.shape[:coefficients.ndim - feature_ndim]
    matrix = coefficients.reshape((*lead_rows, -1))
    value = ops.matmul(matrix, center_column)
    spread = ops.matmul(ops.abs(matrix), radius_column)
    value = (value + spread) if sign > 0 else (value - spread)
    value = value.reshape(value.shape[:-1])
    return value if bias is None else value + bias


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
        feature_ndim = len(self.input_shape)
        if tuple(box.shape[box.lower.ndim - feature_ndim:]) != self.input_shape:
            raise ValueError(f"box of shape {box.shape} does not match the bounds' input "
                             f"shape {self.input_shape}")
        center = flat_column(box.center, feature_ndim)
        radius = flat_column(box.radius, feature_ndim)
        lower = bound_coefficients(self.A_l, self.b_l, center, radius, feature_ndim, -1.0)
        upper = bound_coefficients(self.A_u, self.b_u, center, radius, feature_ndim, +1.0)
        return lower, upper

    def evaluate(self, x: Any) -> tuple[Tensor, Tensor]:
        """(A_l x + b_l, A_u x + b_u) at points x of shape (B, *input_shape)."""
        x = x if isinstance(x, Tensor) else Tensor(x)
        column = flat_column(x, len(self.input_shape))
        feature_ndim = len(self.input_shape)
        zero = column * 0.0
        return (bound_coefficients(self.A_l, self.b_l, column, zero, feature_ndim, -1.0),
                bound_coefficients(self.A_u, self.b_u, column, zero, feature_ndim, +1.0))

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
