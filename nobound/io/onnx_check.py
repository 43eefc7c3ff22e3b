"""Check an import: the imported network and the ONNX graph must compute the same function.

The graph is evaluated by ``onnx.reference`` (ONNX's reference implementation) on random
inputs — in the verification box when one is given — with every intermediate value kept;
the imported network is evaluated layer by layer. Each :class:`Checkpoint` the importer
recorded ties an ONNX value to a prefix of the layers (through the layout index). The
first checkpoint whose values differ by more than

    tolerance = 1000 · ε(coarser of the two dtypes) · (1 + max |reference value|)

stops the import with :class:`OnnxImportError` naming that node. Float32 evaluation of a
few hundred multiply-adds per output stays orders of magnitude below this, while a wrong
weight, sign or layout changes values by their own size. No verdict is ever produced on a
network that differs from its file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.backend import to_numpy
from nobound.io.onnx_graph import OnnxImportError, graph_input

# Tolerance factor on the dtype's machine epsilon (see the module doc).
TOLERANCE_ULPS = 1000.0


def _numpy_dtype(elem_type: int) -> np.dtype:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def reference_values(onnx_model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every value of the graph for one input ``x`` (with its batch axis of 1)."""
    import copy

    from onnx.reference import ReferenceEvaluator

    model = copy.deepcopy(onnx_model)
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(info for info in model.graph.value_info
                              if info.name not in known)
    evaluator = ReferenceEvaluator(model)
    source = graph_input(model)
    dtype = _numpy_dtype(source.type.tensor_type.elem_type)
    # the reference's Sigmoid evaluates both branches of a where: e^{-x} overflows and
    # inf/inf is nan in the branch it then discards
    with np.errstate(over="ignore", invalid="ignore"):
        values = evaluator.run(None, {source.name: np.asarray(x, dtype)})
    return dict(zip(evaluator.output_names, values, strict=True))


def sample_inputs(shape: tuple[int, ...], count: int, seed: int,
                  box: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """``count`` file-ordered inputs: uniform in the box (vertices included), else normal."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    if box is None:
        return rng.normal(size=(count, size))
    lower, upper = (np.asarray(b, np.float64).reshape(-1) for b in box)
    points = lower + rng.random((count, size)) * (upper - lower)
    points[0] = np.where(rng.random(size) < 0.5, lower, upper)   # a vertex
    return points


def check_import(network: Any, box: tuple[np.ndarray, np.ndarray] | None = None,
                 count: int = 3, seed: int = 0) -> float:
    """Raise :class:`OnnxImportError` at the first diverging node; returns the largest
    difference relative to its tolerance (< 1 when the import matches)."""
    onnx_model = network.onnx_model
    source = graph_input(onnx_model)
    file_shape = tuple(d.dim_value for d in source.type.tensor_type.shape.dim)
    file_dtype = _numpy_dtype(source.type.tensor_type.elem_type)
    params = list(network.model.parameters())
    model_dtype = np.dtype(params[0].dtype) if params else np.dtype(np.float64)
    eps = max(np.finfo(file_dtype).eps, np.finfo(model_dtype).eps)
    worst = 0.0
    for x in sample_inputs(file_shape, count, seed, box):
        reference = reference_values(onnx_model, x.reshape(file_shape))
        outputs, value = [], Tensor(np.asarray(network.to_model_input(x)[None], model_dtype))
        with no_grad():
            for layer in network.model.layers:
                value = layer(value)
                outputs.append(to_numpy(value.data).reshape(-1))
        for point in network.checkpoints:
            expected = np.asarray(reference[point.value], np.float64).reshape(-1)
            ours = np.asarray(outputs[point.layers - 1], np.float64)[point.index.reshape(-1)]
            tolerance = TOLERANCE_ULPS * eps * (1.0 + float(np.max(np.abs(expected),
                                                                   initial=0.0)))
            difference = float(np.max(np.abs(ours - expected), initial=0.0))
            if not difference <= tolerance:
                raise OnnxImportError(
                    f"the imported network differs from the ONNX graph first at node "
                    f"{point.node!r} (output {point.value!r}): max difference "
                    f"{difference:.3g} > tolerance {tolerance:.3g}")
            worst = max(worst, difference / tolerance)
    return worst
