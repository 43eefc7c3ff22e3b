"""A verification problem: one box, one set of linear output rows, one question.

A problem is the statement that its **unsafe set** is empty:

    U = { x : lower ≤ x ≤ upper  and  r_i(x) := spec_i · f(x) + offset_i ≤ 0 for every row i }.

It holds iff every x in the box has some row r_i(x) > 0, so a sub-domain D of the box is
*proved* as soon as one row has a lower bound > 0 on D. A *counterexample* is a point of
the box where every row is ≤ 0, found by a float64 forward pass and then replayed in the
model's own arithmetic (its dtype; ``replay``), where it must hold again.

The two verdicts are about two readings of the same stored weights: "no unsafe point"
holds for f computed in *real* arithmetic from the stored parameters (checked with outward
rounding, :mod:`nobound.certify.checker`); a counterexample holds for f as the model
computes it (float32 for a float32 model). See docs/certifier.md, "What a verdict means".

Robustness of (x, t) under an l∞ ball is the conjunction, over j ≠ t, of the problems with
the single row r(x) = f_t(x) − f_j(x) (the unsafe set "class j scores at least as high as
t"); a VNNLIB file gives one problem per disjunct (:mod:`nobound.io.vnnlib`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import to_numpy
from nobound.nn.sequential import Sequential

if TYPE_CHECKING:
    from nobound.certify.replay import Replay


def float64_model(model: Sequential) -> Sequential:
    """An eval-mode float64 CPU copy: certification reasons in float64 (see docs)."""
    copied = copy.deepcopy(model)
    copied.to("cpu")
    copied.astype(np.float64)
    return copied.eval()



# A row is a *candidate* proof when its (unrounded float64) lower bound is above this.
# No margin: whether the candidate really proves anything is decided by the rigorous
# check of :mod:`nobound.certify.checker` (outward rounding), not by a guessed tolerance.
PROOF_TOLERANCE = 0.0


@dataclass
class VerificationProblem:
    """Prove that no x in [lower, upper] makes every row spec·f(x) + offset ≤ 0."""

    model: Sequential        # float64, eval mode
    lower: np.ndarray        # (*input_shape)
    upper: np.ndarray        # (*input_shape)
    spec: np.ndarray         # (rows, outputs)
    offset: np.ndarray       # (rows,)
    name: str = ""
    # the model in its own arithmetic (dtype); None: the float64 model is the model
    replay: Replay | None = None

    def __post_init__(self) -> None:
        self.lower = np.asarray(self.lower, np.float64)
        self.upper = np.asarray(self.upper, np.float64)
        self.spec = np.atleast_2d(np.asarray(self.spec, np.float64))
        self.offset = np.asarray(self.offset, np.float64).reshape(-1)
        if self.lower.shape != self.upper.shape:
            raise ValueError("box lower and upper differ in shape")
        if self.offset.shape[0] != self.spec.shape[0]:
            raise ValueError("one offset per spec row is needed")
        for what, values in (("input bounds", (self.lower, self.upper)),
                             ("output constraints", (self.spec, self.offset))):
            if not all(np.all(np.isfinite(v)) for v in values):
                raise ValueError(f"{self.name or 'the property'}: the {what} contain NaN "
                                 f"or infinite numbers")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.lower.shape)

    @property
    def num_rows(self) -> int:
        return self.spec.shape[0]

    @property
    def is_empty(self) -> bool:
        """An empty box has no unsafe point."""
        return bool(np.any(self.lower > self.upper))

    @property
    def box_key(self) -> bytes:
        """The box as bytes: equal exactly for problems on the same box (they share bounds,
        attacks and searches)."""
        return self.lower.tobytes() + self.upper.tobytes()

    def outputs(self, points: Any) -> np.ndarray:
        """f(x) by a float64 forward pass, for points of shape (N, *input_shape)."""
        with no_grad():
            return to_numpy(self.model(Tensor(np.asarray(points, np.float64))).data)

    def row_values(self, outputs: np.ndarray) -> np.ndarray:
        """r(x) = spec · y + offset for outputs (N, outputs) → (N, rows)."""
        return outputs @ self.spec.T + self.offset

    def find_counterexample(self, candidates: Any) -> Counterexample | None:
        """The first candidate that, clipped into the box, violates the property: in
        float64, then alone (a batched product may round differently from a single one),
        then in the model's own arithmetic (:mod:`nobound.certify.replay`)."""
        points = np.clip(np.asarray(candidates, np.float64).reshape(-1, *self.input_shape),
                         self.lower, self.upper)
        if points.shape[0] == 0 or self.is_empty:
            return None
        outputs = self.outputs(points)
        for candidate in np.flatnonzero(np.all(self.row_values(outputs) <= 0, axis=1)):
            point = points[candidate]
            output = self.outputs(point[None])[0]
            if not np.all(self.row_values(output[None]) <= 0):
                continue
            if self.replay is None:
                return Counterexample(point, output)
            found = self._replayed(point)
            if found is not None:
                return found
        return None

    def _replayed(self, point: np.ndarray) -> Counterexample | None:
        from nobound.certify.replay import in_dtype_and_box, violates

        stored = in_dtype_and_box(point, self.replay.dtype, self.lower, self.upper)
        if stored is None:
            return None
        output = self.replay(stored[None])[0]
        if violates(output, self.spec, self.offset):
            return Counterexample(stored, output)
        return None


@dataclass
class Counterexample:
    """An input in the box and the model's outputs there, which violate every row (in the
    model's own arithmetic when the problem has a replay; the input is then a value of
    the model's dtype)."""

    input: np.ndarray
    output: np.ndarray


def robustness_problems(model: Sequential, x: Any, label: int, eps: float,
                        low: float | None = 0.0, high: float | None = 1.0) -> list[
                            VerificationProblem]:
    """One single-row problem per class j ≠ label: r(x) = f_label − f_j, box B_ε(x) ∩ [low, high].

    ``model`` should already be a :func:`float64_model`.
    """
    x = np.asarray(to_numpy(x), np.float64)
    lower, upper = x - eps, x + eps
    if low is not None:
        lower = np.maximum(lower, low)
    if high is not None:
        upper = np.minimum(upper, high)
    num_classes = int(model(Tensor(x[None])).shape[-1])
    problems = []
    for other in range(num_classes):
        if other == label:
            continue
        row = np.zeros(num_classes)
        row[label], row[other] = 1.0, -1.0
        problems.append(VerificationProblem(model, lower, upper, row[None], np.zeros(1),
                                            name=f"class {label} vs {other}"))
    return problems
def group_by_box(problems: list[VerificationProblem], skip_empty: bool = False
                 ) -> list[list[int]]:
    """Indices of ``problems`` grouped by box, in order of first appearance (empty boxes
    left out with ``skip_empty``)."""
    groups: dict[bytes, list[int]] = {}
    for index, problem in enumerate(problems):
        if not (skip_empty and problem.is_empty):
            groups.setdefault(problem.box_key, []).append(index)
    return list(groups.values())


