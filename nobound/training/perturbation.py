"""Parameter vectors and the Gaussian noise that perturbs them (RGS §3.4, PGPE §3.3).

Both GLS estimators treat the network's parameters θ as one vector in R^d: they sample
θ' = θ + ε with ε ~ N(0, diag(σ²)) and evaluate the loss at every θ'. A
:class:`ParameterLayout` maps named arrays (``"0.weight"``, ``"0.bias"``, …) to one flat
vector and back; a matrix of P flat vectors (P, d) becomes named arrays with a leading
population axis (P, *shape), which is exactly what ``model(x, params)`` and
``compute_bounds(..., params=...)`` accept.

Noise is never carried as state. Direction i of step (epoch, step) is the standard normal
vector drawn from ``random_stream(seed, epoch, step, i, name=...)``, so it can be
regenerated at will: PGPE draws it once to evaluate the population and again, chunk by
chunk, to form its gradient, instead of holding n_ps × d numbers, and a resumed run draws
exactly the noise the uninterrupted run would have drawn. Because every direction has its
own stream, the numbers do not depend on how the population is split into chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor
from nobound.backend import get_array_module, random_stream, unwrap


class ParameterLayout:
    """Where each named parameter lives inside the flat vector θ ∈ R^d."""

    def __init__(self, names: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> None:
        self.names = list(names)
        self.shapes = [tuple(int(n) for n in shape) for shape in shapes]
        self.sizes = [int(np.prod(shape)) for shape in self.shapes]
        self.offsets = [int(o) for o in np.cumsum([0] + self.sizes)]
        self.size = self.offsets[-1]

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> ParameterLayout:
        """The layout of named arrays or Tensors, in their iteration order."""
        return cls(list(params), [tuple(unwrap(value).shape) for value in params.values()])

    def flatten(self, params: Mapping[str, Any]) -> Any:
        """Named arrays (no population axis) → θ, shape (d,)."""
        arrays = [unwrap(params[name]).reshape(-1) for name in self.names]
        return get_array_module(arrays[0]).concatenate(arrays)

    def unflatten(self, vectors: Any) -> dict[str, Any]:
        """(..., d) → {name: (..., *shape)}; the results are views of ``vectors``."""
        leading = vectors.shape[:-1]
        if vectors.shape[-1] != self.size:
            raise ValueError(f"expected vectors of length {self.size}, got shape "
                             f"{vectors.shape}")
        return {name: vectors[..., start:start + size].reshape(leading + shape)
                for name, shape, start, size in zip(self.names, self.shapes, self.offsets[:-1],
                                                    self.sizes, strict=True)}

    def to_tensors(self, vectors: Any, requires_grad: bool = False) -> dict[str, Tensor]:
        """Like :meth:`unflatten` but wrapped as Tensors (leaves if ``requires_grad``)."""
        return {name: Tensor(array, requires_grad=requires_grad)
                for name, array in self.unflatten(vectors).items()}

    def flatten_population(self, params: Mapping[str, Any]) -> Any:
        """{name: (P, *shape)} → (P, d): the inverse of :meth:`unflatten` for a population."""
        arrays = [unwrap(params[name]) for name in self.names]
        population = arrays[0].shape[0]
        xp = get_array_module(arrays[0])
        return xp.concatenate([a.reshape(population, -1) for a in arrays], axis=1)


def standard_normal_directions(seed: int, epoch: int, step: int, indices: Sequence[int],
                               size: int, name: str, xp: ModuleType = np,
                               dtype: Any = np.float32) -> Any:
    """Rows z_i ~ N(0, I_d) for the given direction indices, shape (len(indices), d).

    Row i comes from ``random_stream(seed, epoch, step, i, name=name)`` alone, so any subset
    of directions can be regenerated independently and identically.
    """
    out = xp.empty((len(indices), size), dtype=dtype)
    for row, index in enumerate(indices):
        rng = random_stream(seed, epoch, step, int(index), name=name, xp=xp)
        out[row] = rng.standard_normal(size, dtype=np.dtype(dtype).type)
    return out
