"""Normalise an ONNX graph as exporters write it into a plain chain of layer operators.

PyTorch, tf2onnx and the VNN-COMP benchmarks surround the layers with bookkeeping: the
batch axis is symbolic, ``x.view(x.size(0), -1)`` becomes Shape → Gather → Unsqueeze →
Concat → Reshape, constants arrive as ``Constant`` nodes or through ``Cast``/``Identity``
chains. Before :mod:`nobound.io.onnx_import` maps nodes to layers, this module

1. reads ``.onnx`` or ``.onnx.gz``;
2. fixes the batch axis of the single graph input to 1 (verification is per input);
3. runs ONNX's own shape inference, so every value has a concrete shape;
4. folds every node whose inputs are all constants — and every ``Shape`` node, whose value
   is now known — by evaluating it with ``onnx.reference`` (the ONNX reference
   implementation, not a re-implementation of its operators), repeatedly until nothing
   changes;
5. removes ``Identity`` and ``Dropout`` (inference) nodes.

What remains are the nodes that depend on the data. The result is an ordinary
``ModelProto`` that ``onnx.reference`` still evaluates, so the import check
(:mod:`nobound.io.onnx_check`) compares against the *normalised* graph as well as the file.
"""

from __future__ import annotations

import copy
import gzip
from pathlib import Path
from typing import Any

import numpy as np


class OnnxImportError(ValueError):
    """The ONNX graph uses an operator or a structure nobound cannot represent."""


def read_onnx(source: str | Path | Any) -> Any:
    """A ``ModelProto`` from a path (``.onnx`` or ``.onnx.gz``) or a ``ModelProto``."""
    import onnx

    if not isinstance(source, str | Path):
        return source
    path = Path(source)
    data = path.read_bytes()
    if path.suffix == ".gz" or data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        return onnx.load_from_string(data)
    except Exception as error:  # protobuf raises its own DecodeError
        raise OnnxImportError(f"{path}: not an ONNX model ({error})") from None


def graph_input(model: Any) -> Any:
    """The one graph input that is not an initialiser (older exporters list both)."""
    constants = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise OnnxImportError(f"expected one graph input, found {len(inputs)}")
    return inputs[0]


def opset_version(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def value_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Concrete shapes of every value that shape inference could determine."""
    shapes = {}
    infos = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    for info in infos:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value")
                                                           for d in dims):
            shapes[info.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def _fix_batch(model: Any) -> None:
    """Give the graph input (and outputs) a batch axis of size 1 where it is symbolic."""
    for info in [graph_input(model), *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        for position, dim in enumerate(dims):
            if position == 0 and (not dim.HasField("dim_value") or dim.dim_value <= 0):
                dim.Clear()
                dim.dim_value = 1
            elif not dim.HasField("dim_value") or dim.dim_value <= 0:
                if info.name == graph_input(model).name:
                    raise OnnxImportError(f"graph input {info.name!r} has a symbolic "
                                          f"non-batch axis {position}")


def _infer_shapes(model: Any) -> Any:
    import onnx

    del model.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as error:  # inference errors come as several exception types
        raise OnnxImportError(f"shape inference failed: {str(error).splitlines()[0]}") \
            from None


def _evaluate_node(node: Any, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    """One node run by ``onnx.reference`` in a one-node model of the file's opset (an
    operator's signature changes between opsets, e.g. Unsqueeze's axes in opset 13)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [name for name in node.input if name]
    feeds = dict(zip(names, inputs, strict=True))
    graph = helper.make_graph(
        [node], "fold",
        [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(
            np.asarray(value).dtype), np.shape(value)) for name, value in feeds.items()],
        [helper.make_empty_tensor_value_info(name) for name in node.output if name])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, feeds)


def fold_constants(model: Any) -> Any:
    """Evaluate every constant sub-graph (see the module doc); returns a new model."""
    from onnx import helper, numpy_helper

    model = _infer_shapes(model)
    opset = opset_version(model)
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    shapes = value_shapes(model)
    kept, renamed = [], {}
    for node in model.graph.node:
        for position, name in enumerate(node.input):
            if name in renamed:
                node.input[position] = renamed[name]
        inputs = [name for name in node.input if name]
        if node.op_type in ("Identity", "Dropout") and inputs[0] not in constants:
            renamed[node.output[0]] = inputs[0]
            continue
        if node.op_type == "Shape" and inputs[0] in shapes:
            values = _evaluate_node(node, [np.zeros(shapes[inputs[0]], np.float32)], opset)
        elif all(name in constants for name in inputs) and node.op_type != "RandomNormal":
            try:
                values = _evaluate_node(node, [constants[n] for n in inputs], opset)
            except Exception as error:  # the reference raises per-operator exceptions
                raise OnnxImportError(f"node {node.name or node.op_type!r} ({node.op_type}): "
                                      f"constant folding failed: {error}") from None
        else:
            kept.append(node)
            continue
        for name, value in zip(node.output, values, strict=False):
            constants[name] = np.asarray(value)
    outputs = {o.name for o in model.graph.output}
    for name in [n for n in renamed if n in outputs]:  # an Identity produced an output
        kept.append(helper.make_node("Identity", [renamed[name]], [name]))
    used = {name for node in kept for name in node.input} | outputs
    graph = helper.make_graph(
        kept, model.graph.name, list(model.graph.input), list(model.graph.output),
        [numpy_helper.from_array(value, name) for name, value in constants.items()
         if name in used])
    folded = helper.make_model(graph, opset_imports=list(model.opset_import),
                               producer_name=model.producer_name)
    folded.ir_version = model.ir_version
    constant_names = {t.name for t in graph.initializer}
    keep_inputs = [i for i in folded.graph.input if i.name not in constant_names
                   or i.name in used]
    del folded.graph.input[:]
    folded.graph.input.extend(keep_inputs)
    return _infer_shapes(folded)


def normalise(source: str | Path | Any) -> Any:
    """The normalised ``ModelProto`` of a file or model (see the module doc)."""
    import onnx

    model = copy.deepcopy(read_onnx(source))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise OnnxImportError(f"invalid ONNX model: {str(error).splitlines()[0]}") from None
    _fix_batch(model)
    return fold_constants(model)
