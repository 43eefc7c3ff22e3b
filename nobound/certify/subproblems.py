"""Bound many sub-problems of one problem in one batched relaxation call.

A sub-problem is the problem's box with some hidden neurons' signs fixed. N of them are
stacked along the batch axis of :func:`nobound.bounds.compute_bounds`: the same box and
rows N times, one split array per ReLU layer of shape (N, *neurons), and the parents'
pre-activation bounds as ``intermediate`` (valid on each child, whose domain is inside
its parent's). What comes back, per sub-problem:

* ``lower`` (N, rows): lower bounds of r_i = spec_i · f + offset_i on the sub-domain;
* ``bounds``: per hidden layer k, flat (l, u) of (N, n_k) after intersection and clamping;
* ``minimisers`` (N, *input_shape): for each sub-problem, the box corner minimising the
  linear lower bound of its best row — a cheap counterexample candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import to_numpy
from nobound.certify.problem import VerificationProblem
from nobound.exact.dense import DenseNetwork

Interval = tuple[np.ndarray, np.ndarray]


@dataclass
class BoundedSubproblems:
    lower: np.ndarray
    bounds: list[Interval]
    minimisers: np.ndarray | None


def _stack(array: np.ndarray, count: int) -> np.ndarray:
    return np.broadcast_to(array, (count, *array.shape)).copy()


def bound_subproblems(problem: VerificationProblem, dense: DenseNetwork,
                      signs: list[np.ndarray], known: list[Interval] | None,
                      method: str = "deeppoly", chunk: int = 256) -> BoundedSubproblems:
    """Bound N sub-problems (``signs[k]`` of shape (N, n_k)) in chunks of ``chunk``."""
    count = signs[0].shape[0] if signs else 1
    pieces = []
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        pieces.append(_bound_chunk(problem, dense, [s[start:stop] for s in signs],
                                   None if known is None else
                                   [(lo[start:stop], hi[start:stop]) for lo, hi in known],
                                   method))
    minimisers = None if any(p.minimisers is None for p in pieces) else \
        np.concatenate([p.minimisers for p in pieces])
    bounds = [(np.concatenate([p.bounds[k][0] for p in pieces]),
               np.concatenate([p.bounds[k][1] for p in pieces]))
              for k in range(len(signs))]
    return BoundedSubproblems(np.concatenate([p.lower for p in pieces]), bounds, minimisers)


def _bound_chunk(problem: VerificationProblem, dense: DenseNetwork, signs: list[np.ndarray],
                 known: list[Interval] | None, method: str) -> BoundedSubproblems:
    from nobound.bounds import Box, compute_bounds

    count = signs[0].shape[0] if signs else 1
    box = Box(Tensor(_stack(problem.lower, count)), Tensor(_stack(problem.upper, count)))
    spec = _stack(problem.spec, count)
    splits = {layer: signs[k].reshape(count, *dense.relu_shapes[k])
              for k, layer in enumerate(dense.relu_layers)}
    intermediate = None if known is None else {
        layer: (known[k][0].reshape(count, *dense.relu_shapes[k]),
                known[k][1].reshape(count, *dense.relu_shapes[k]))
        for k, layer in enumerate(dense.relu_layers)}
    with no_grad():
        result = compute_bounds(problem.model, box, method=method, spec=spec, splits=splits,
                                intermediate=intermediate, return_linear=True)
    lower = to_numpy(result.lower.data).reshape(count, -1) + problem.offset
    bounds = []
    for k, layer in enumerate(dense.relu_layers):
        low, high = (to_numpy(t.data if isinstance(t, Tensor) else t).reshape(count, -1)
                     for t in result.intermediate[layer])
        if known is not None:  # the relaxation intersects already; this keeps it explicit
            low, high = np.maximum(low, known[k][0]), np.minimum(high, known[k][1])
        low = np.where(signs[k] > 0, np.maximum(low, 0.0), low)
        high = np.where(signs[k] < 0, np.minimum(high, 0.0), high)
        bounds.append((low, high))
    minimisers = None
    linear = getattr(result, "linear", None)
    if linear is not None:
        coefficients = to_numpy(linear.A_l.data).reshape(count, problem.num_rows, -1)
        best = np.argmax(lower, axis=1)
        chosen = coefficients[np.arange(count), best]
        flat_lower = problem.lower.reshape(1, -1)
        flat_upper = problem.upper.reshape(1, -1)
        minimisers = np.where(chosen < 0, flat_upper, flat_lower).reshape(
            count, *problem.input_shape)
    return BoundedSubproblems(lower, bounds, minimisers)
