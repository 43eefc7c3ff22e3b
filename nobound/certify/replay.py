"""Replaying a counterexample in the model's own arithmetic.

The certifier searches in float64, but a ``sat``/falsified verdict is about the model the
user ships: a float32 network rounds differently, and a point that is unsafe in float64
can be safe in float32 (y = (ReLU(x + 10⁸) − 10⁸) + 0.5 is x + 0.5 in float64 and 0.5 in
float32). So a counterexample counts only when

1. the point, stored in the model's dtype, lies in the box (compared exactly), and
2. the model's own forward pass — nobound's forward in the checkpoint's dtype, or ONNX's
   reference evaluator on the ONNX file in its dtype — gives outputs whose every row
   spec_i · y + offset_i is ≤ 0, evaluated exactly (fractions) on those outputs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Replay(Protocol):
    """Outputs (N, outputs) of the model in its own arithmetic, returned as float64."""

    dtype: np.dtype

    def __call__(self, points: np.ndarray) -> np.ndarray: ...


class ModelReplay:
    """A nobound model's forward pass in its own dtype, on a CPU copy in eval mode."""

    def __init__(self, model: Any) -> None:
        from nobound.backend import to_numpy

        parameters = [to_numpy(p.data) for p in model.parameters()]
        self.dtype = np.dtype(parameters[0].dtype if parameters else np.float64)
        self.model = copy.deepcopy(model)
        self.model.to("cpu")
        self.model.eval()

    def __call__(self, points: np.ndarray) -> np.ndarray:
        from nobound.autodiff.tensor import Tensor, no_grad
        from nobound.backend import to_numpy

        with no_grad():
            out = self.model(Tensor(np.asarray(points, self.dtype)))
        return np.asarray(to_numpy(out.data), np.float64).reshape(len(points), -1)


class OnnxReplay:
    """ONNX's reference evaluator (``onnx.reference``) on the original graph, in its dtype.

    ``to_file_input`` maps one model-layout input to the file's flat input order (an
    imported network's :meth:`to_file_input`; default: the same order).
    """

    def __init__(self, source: str | Path | Any,
                 to_file_input: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        model = onnx.load(str(source)) if isinstance(source, str | Path) else source
        initializers = {i.name for i in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in initializers]
        if len(inputs) != 1:
            raise ValueError(f"the ONNX model has {len(inputs)} inputs, expected one")
        tensor_type = inputs[0].type.tensor_type
        self.name = inputs[0].name
        self.dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        self.shape = tuple(d.dim_value if d.HasField("dim_value") else 1
                           for d in tensor_type.shape.dim)
        self.output = model.graph.output[0].name
        self.to_file_input = to_file_input or (lambda x: np.asarray(x).reshape(-1))
        self.evaluator = ReferenceEvaluator(model)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        outputs = []
        for point in np.asarray(points):
            feed = np.asarray(self.to_file_input(point), self.dtype).reshape(self.shape)
            with np.errstate(over="ignore"):
                result = self.evaluator.run([self.output], {self.name: feed})[0]
            outputs.append(np.asarray(result, np.float64).reshape(-1))
        return np.stack(outputs)


def network_replay(network: Any) -> Replay:
    """The replay of an imported network: its ONNX graph when it came from one, else its
    model's forward pass in its own dtype."""
    onnx_model = getattr(network, "onnx_model", None)
    if onnx_model is not None:
        return OnnxReplay(onnx_model, network.to_file_input)
    return ModelReplay(network.model)


def in_dtype_and_box(point: np.ndarray, dtype: np.dtype, lower: np.ndarray,
                     upper: np.ndarray) -> np.ndarray | None:
    """The point stored in ``dtype``, moved by one step of that dtype where rounding left
    the box; None when no such point lies in the box. Returned as float64 (exact)."""
    stored = np.asarray(point, np.float64).astype(dtype)
    stored = np.where(stored.astype(np.float64) < lower,
                      np.nextafter(stored, np.asarray(np.inf, dtype)), stored)
    stored = np.where(stored.astype(np.float64) > upper,
                      np.nextafter(stored, np.asarray(-np.inf, dtype)), stored)
    exact = stored.astype(np.float64)
    if np.all((exact >= lower) & (exact <= upper)):
        return exact
    return None


def violates(outputs: np.ndarray, spec: np.ndarray, offset: np.ndarray) -> bool:
    """Whether every row spec_i · y + offset_i ≤ 0 for one output vector y, exactly
    (rational arithmetic on the floats: rows are few and an exact 0 counts as ≤ 0).
    Non-finite outputs confirm nothing."""
    outputs = np.asarray(outputs, np.float64).reshape(-1)
    if not np.all(np.isfinite(outputs)):
        return False
    values = [Fraction(float(y)) for y in outputs]
    return all(sum((Fraction(float(c)) * y for c, y in zip(row, values, strict=True)),
                   Fraction(float(b))) <= 0 for row, b in zip(spec, offset, strict=True))
