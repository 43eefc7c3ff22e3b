"""Import a feed-forward ONNX network as a nobound ``Sequential`` (optional extra ``onnx``).

Supported: a *chain* of nodes, each consuming the previous node's output plus constants
(initialisers or ``Constant`` nodes), made of the operators found in the MNIST/CIFAR
verification benchmarks:

========================  ==============================================================
ONNX operator             nobound layer
========================  ==============================================================
Gemm, MatMul (+ Add)      Linear; W = alpha·B′ᵀ, b = beta·C (a following Add of a constant
                          vector is folded into the bias)
Conv (+ Add)              Conv2d (square kernel, equal strides, symmetric padding, group 1)
Relu                      ReLU
Flatten, Reshape          Flatten (C,H,W) → (C·H·W); a Reshape of the graph input itself
                          becomes the model's input shape
Sub, Add, Div, Mul        per-channel affine y = scale·x + shift with constant operands:
  by constants            ``Normalize(mean, std)`` when scale > 0 on (C,H,W) data (consecutive
                          ones merged: the usual (x − mean)/std), else an eval-mode
                          ``BatchNorm`` with ε = 0, running mean 0 and variance 1, so that
                          y = weight·x + bias exactly
BatchNormalization        BatchNorm in eval mode with the file's running statistics
Transpose                 only when it moves no data (a permutation of size-1 axes)
Identity, Dropout         nothing (inference)
========================  ==============================================================

Anything else raises :class:`OnnxImportError` naming the operator and the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor
from nobound.backend import default_dtype
from nobound.nn import BatchNorm, Conv2d, Flatten, Linear, Module, Normalize, ReLU, Sequential


class OnnxImportError(ValueError):
    """The ONNX graph uses an operator or a structure nobound cannot represent."""


@dataclass
class ImportedNetwork:
    """The model, the shape of one input (no batch axis) and the number of outputs."""

    model: Sequential
    input_shape: tuple[int, ...]
    num_outputs: int


def _set(parameter: Tensor, value: np.ndarray) -> None:
    parameter.data = np.asarray(value, dtype=parameter.dtype).reshape(parameter.shape).copy()


def _affine_batchnorm(scale: np.ndarray, shift: np.ndarray, spatial: bool,
                      dtype: Any) -> BatchNorm:
    """A BatchNorm that computes exactly y = scale·x + shift per channel (see the table)."""
    layer = BatchNorm(scale.size, spatial=spatial, eps=0.0, dtype=dtype)
    _set(layer.weight, scale)
    _set(layer.bias, shift)
    return layer.eval()


class _Importer:
    def __init__(self, graph: Any, dtype: Any) -> None:
        from onnx import numpy_helper

        self.dtype = dtype
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise OnnxImportError(f"expected one graph input, found {len(inputs)}")
        dims = [d.dim_value if d.HasField("dim_value") else 1
                for d in inputs[0].type.tensor_type.shape.dim]
        if not dims:
            raise OnnxImportError("the graph input has no shape")
        self.shape = tuple(dims[1:]) if len(dims) > 1 else tuple(dims)
        self.input_shape = self.shape
        self.current = inputs[0].name
        self.layers: list[Module] = []
        self.graph = graph

    # ------------------------------------------------------------------ helpers
    def fail(self, node: Any, index: int, message: str) -> OnnxImportError:
        name = node.name or f"#{index}"
        return OnnxImportError(f"node {name!r} ({node.op_type}): {message}")

    def constant(self, node: Any, index: int, name: str) -> np.ndarray:
        if name not in self.constants:
            raise self.fail(node, index, f"input {name!r} must be a constant")
        return self.constants[name]

    def split_inputs(self, node: Any, index: int) -> tuple[int, list[np.ndarray]]:
        """(position of the data input, the constant operands in order)."""
        data = [i for i, name in enumerate(node.input) if name == self.current]
        if len(data) != 1 or any(n not in self.constants for n in node.input
                                 if n and n != self.current):
            raise self.fail(node, index, "not a chain: needs exactly one input from the "
                                         "previous node and constants otherwise (residual "
                                         "or multi-input graphs are unsupported)")
        return data[0], [self.constants[n] for n in node.input if n and n != self.current]

    def attributes(self, node: Any) -> dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    # ------------------------------------------------------------------ operators
    def linear(self, weight: np.ndarray, bias: np.ndarray, node: Any, index: int) -> None:
        if len(self.shape) != 1 or weight.shape[1] != self.shape[0]:
            raise self.fail(node, index, f"weight {weight.shape} does not match data of "
                                         f"shape {self.shape} (flatten first)")
        layer = Linear(weight.shape[1], weight.shape[0], dtype=self.dtype)
        _set(layer.weight, weight)
        _set(layer.bias, np.broadcast_to(bias, (weight.shape[0],)))
        self.layers.append(layer)
        self.shape = (weight.shape[0],)

    def gemm(self, node: Any, index: int) -> None:
        position, operands = self.split_inputs(node, index)
        attrs = self.attributes(node)
        if position != 0 or attrs.get("transA", 0):
            raise self.fail(node, index, "the data must be the first, untransposed operand")
        matrix = operands[0] if attrs.get("transB", 0) else operands[0].T
        bias = attrs.get("beta", 1.0) * operands[1] if len(operands) > 1 else 0.0
        self.linear(attrs.get("alpha", 1.0) * matrix, np.reshape(bias, -1), node, index)

    def matmul(self, node: Any, index: int) -> None:
        position, (matrix,) = self.split_inputs(node, index)
        if position != 0 or matrix.ndim != 2:
            raise self.fail(node, index, "only data @ constant matrix is supported")
        self.linear(matrix.T, np.zeros(matrix.shape[1]), node, index)

    def conv(self, node: Any, index: int) -> None:
        position, operands = self.split_inputs(node, index)
        attrs = self.attributes(node)
        weight = operands[0]
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        strides = list(attrs.get("strides", [1, 1]))
        if position != 0 or weight.ndim != 4 or len(self.shape) != 3:
            raise self.fail(node, index, "only 2-D convolutions of (C, H, W) data")
        if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])) \
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise self.fail(node, index, "groups, dilations and auto_pad are unsupported")
        if weight.shape[2] != weight.shape[3] or len(set(pads)) != 1 or len(set(strides)) != 1:
            raise self.fail(node, index, "needs a square kernel, equal strides and equal pads")
        layer = Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], strides[0], pads[0],
                       dtype=self.dtype)
        _set(layer.weight, weight)
        _set(layer.bias, operands[1] if len(operands) > 1 else np.zeros(weight.shape[0]))
        self.shape = layer.output_shape(self.shape)
        self.layers.append(layer)

    def fold_into_bias(self, shift: np.ndarray) -> bool:
        """Add a constant to the previous Linear/Conv2d bias when it is per output unit."""
        last = self.layers[-1] if self.layers else None
        if not isinstance(last, Linear | Conv2d) or last.bias is None:
            return False
        per_unit = _per_channel(shift, self.shape)
        if per_unit is None:
            return False
        _set(last.bias, last.bias.data + np.broadcast_to(per_unit, last.bias.shape))
        return True

    def affine(self, scale: np.ndarray, shift: np.ndarray, node: Any, index: int) -> None:
        """Append y = scale·x + shift (per channel), as described in the module table."""
        scale, shift = _per_channel(scale, self.shape), _per_channel(shift, self.shape)
        if scale is None or shift is None:
            raise self.fail(node, index, f"constant operand is not per-channel for data of "
                                         f"shape {self.shape}")
        channels = self.shape[0]
        scale, shift = np.broadcast_to(scale, channels), np.broadcast_to(shift, channels)
        if len(self.shape) == 3 and np.all(scale > 0):
            std, mean = 1.0 / scale, -shift / scale
            last = self.layers[-1] if self.layers else None
            if isinstance(last, Normalize):  # (x − m₁)/s₁ then (· − m₂)/s₂
                mean, std = last.mean + mean * last.std, last.std * std
                self.layers.pop()
            self.layers.append(Normalize(mean, std, dtype=self.dtype))
        else:
            self.layers.append(_affine_batchnorm(scale, shift, len(self.shape) == 3,
                                                 self.dtype))

    def elementwise(self, node: Any, index: int) -> None:
        position, (operand,) = self.split_inputs(node, index)
        op = node.op_type
        if op == "Add":
            if not self.fold_into_bias(operand):
                self.affine(np.ones(1), operand, node, index)
        elif op == "Sub":
            if position == 0:
                if not self.fold_into_bias(-operand):
                    self.affine(np.ones(1), -operand, node, index)
            else:
                self.affine(-np.ones(1), operand, node, index)
        elif op == "Mul":
            self.affine(operand, np.zeros(1), node, index)
        elif op == "Div":
            if position != 0 or np.any(operand == 0):
                raise self.fail(node, index, "only division of the data by nonzero constants")
            self.affine(1.0 / operand, np.zeros(1), node, index)

    def batchnorm(self, node: Any, index: int) -> None:
        position, (gamma, beta, mean, var) = self.split_inputs(node, index)
        eps = self.attributes(node).get("epsilon", 1e-5)
        layer = BatchNorm(self.shape[0], spatial=len(self.shape) == 3, eps=eps,
                          dtype=self.dtype)
        _set(layer.weight, gamma)
        _set(layer.bias, beta)
        layer.running_mean = np.asarray(mean, layer.running_mean.dtype).copy()
        layer.running_var = np.asarray(var, layer.running_var.dtype).copy()
        self.layers.append(layer.eval())

    def reshape(self, node: Any, index: int, target: list[int]) -> None:
        size = prod(self.shape)
        rest = list(target[1:])
        if len(rest) == 1 and rest[0] in (-1, size):
            if len(self.shape) == 3:
                self.layers.append(Flatten())
            self.shape = (size,)
        elif tuple(rest) == self.shape:
            return
        elif not self.layers and -1 not in rest and prod(rest) == size:
            self.shape = self.input_shape = tuple(int(d) for d in rest)
        else:
            raise self.fail(node, index, f"reshape of {self.shape} to {target} is not a "
                                         f"flatten")

    def transpose(self, node: Any, index: int) -> None:
        perm = list(self.attributes(node).get("perm", []))
        full = (1, *self.shape)
        moved = [axis for axis in perm if full[axis] != 1]
        if not perm or perm[0] != 0 or moved != sorted(moved) or \
                tuple(full[a] for a in perm) != full:
            raise self.fail(node, index, f"transpose {perm} moves data (only trivial ones)")

    def node(self, node: Any, index: int) -> None:
        op = node.op_type
        if op == "Constant":
            from onnx import numpy_helper

            attrs = {a.name: a for a in node.attribute}
            if "value" not in attrs:
                raise self.fail(node, index, "only tensor-valued Constant nodes")
            self.constants[node.output[0]] = numpy_helper.to_array(attrs["value"].t)
            return
        if op in ("Gemm", "MatMul", "Conv", "Add", "Sub", "Mul", "Div",
                  "BatchNormalization"):
            {"Gemm": self.gemm, "MatMul": self.matmul, "Conv": self.conv,
             "BatchNormalization": self.batchnorm}.get(op, self.elementwise)(node, index)
        elif op == "Relu":
            self.split_inputs(node, index)
            self.layers.append(ReLU())
        elif op in ("Flatten", "Reshape"):
            position, operands = self.split_inputs(node, index)
            if op == "Flatten":
                if self.attributes(node).get("axis", 1) != 1:
                    raise self.fail(node, index, "only Flatten with axis 1")
                self.reshape(node, index, [0, -1])
            else:
                self.reshape(node, index, [int(d) for d in operands[0].reshape(-1)])
        elif op == "Transpose":
            self.split_inputs(node, index)
            self.transpose(node, index)
        elif op in ("Identity", "Dropout"):
            self.split_inputs(node, index)
        else:
            raise self.fail(node, index, "unsupported operator")
        self.current = node.output[0]


def _per_channel(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``value`` as a per-channel vector for data of ``shape`` (no batch), or None."""
    value = np.asarray(value, dtype=np.float64)
    while value.ndim > len(shape) and value.shape[0] == 1:
        value = value[0]
    if value.size == 1:
        return value.reshape(1)
    if len(shape) == 1:
        return value.reshape(-1) if value.size == shape[0] else None
    padded = value.reshape((1,) * (3 - value.ndim) + value.shape) if value.ndim <= 3 else None
    if padded is None or padded.shape[1:] != (1, 1) or padded.shape[0] != shape[0]:
        return None
    return padded.reshape(-1)


def import_onnx(source: str | Path | Any, dtype: Any = None) -> ImportedNetwork:
    """Read an ONNX model (path or ``ModelProto``) into an :class:`ImportedNetwork`."""
    try:
        import onnx
    except ImportError as error:  # pragma: no cover - onnx is an optional extra
        raise ImportError("ONNX import needs the optional extra: pip install "
                          "nobound[onnx]") from error
    model = onnx.load(str(source)) if isinstance(source, str | Path) else source
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise OnnxImportError(f"invalid ONNX model: {str(error).splitlines()[0]}") from error
    importer = _Importer(model.graph, np.dtype(dtype or default_dtype()))
    for index, node in enumerate(model.graph.node):
        importer.node(node, index)
    outputs = [o.name for o in model.graph.output]
    if outputs != [importer.current]:
        raise OnnxImportError(f"graph outputs {outputs} are not the end of the node chain "
                              f"({importer.current!r})")
    if len(importer.shape) != 1:
        raise OnnxImportError(f"the network output has shape {importer.shape}, expected a "
                              f"vector")
    network = Sequential(*importer.layers).eval()
    return ImportedNetwork(network, tuple(int(d) for d in importer.input_shape),
                           int(importer.shape[0]))
