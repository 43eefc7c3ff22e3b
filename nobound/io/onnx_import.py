"""Import a feed-forward ONNX network as a nobound ``Sequential`` (optional extra ``onnx``).

The file is first normalised (:mod:`nobound.io.onnx_graph`: batch 1, shape inference,
constant sub-graphs folded, Identity/Dropout removed); what remains must be a *chain*: each
node consumes the previous node's output plus constants. Then every import is checked
against the graph itself (:mod:`nobound.io.onnx_check`).

**Layout bookkeeping.** Transpose, Reshape, Flatten, Squeeze and Unsqueeze move no
arithmetic, only positions. The importer follows them with an *index array* shaped like
the current ONNX value (batch axis dropped) whose entries are the flat positions of the
same numbers in the network's own value: before the first layer that is the file's input
(so an NHWC → NCHW Transpose at the input becomes the order in which the file's input —
and the VNNLIB variables ``X_i`` — fill the network's (C, H, W) input, ``input_order``);
after it, the last layer's output (so Keras' Transpose-then-Flatten becomes a column
permutation of the next Linear's weight). A layer that needs a layout — Conv, pooling,
BatchNormalization on (C, H, W) — requires the identity.

========================  ==============================================================
ONNX operator             nobound layer
========================  ==============================================================
Gemm, MatMul (+ Add)      Linear; W = alpha·B′ᵀ, b = beta·C (a following Add of a constant
                          per output is folded into the bias)
Conv (+ Add), Pad         Conv2d; a constant-zero Pad is merged into the next Conv or
                          AveragePool; asymmetric or per-axis pads become symmetric ones
                          with zero rows/columns added to the kernel (exact, see
                          :func:`symmetric_convolution`)
AveragePool,              Conv2d with fixed weights 1/(kh·kw) on the channel diagonal (a
GlobalAveragePool         linear map, so exact in every relaxation)
Relu, Sigmoid, Tanh       ReLU, Sigmoid, Tanh
MaxPool                   MaxPool2d (square kernel, equal strides, symmetric pads)
Sub, Add, Div, Mul        per-feature affine y = scale·x + shift: ``Normalize`` for positive
  by constants            per-channel scales on (C, H, W) data (consecutive ones merged),
                          otherwise an eval-mode BatchNorm with ε = 0, mean 0, variance 1
BatchNormalization        BatchNorm in eval mode with the file's running statistics
Transpose, Reshape,       bookkeeping only (see above)
Flatten, (Un)squeeze
Softmax (last node)       dropped: it is strictly monotone, so it preserves the order of
                          the outputs; :attr:`ImportedNetwork.dropped_softmax` records it and
                          ``verify`` only accepts properties that compare outputs pairwise
========================  ==============================================================

Anything else raises :class:`OnnxImportError` naming the operator and the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor
from nobound.backend import default_dtype
from nobound.io.onnx_graph import (
    OnnxImportError,
    graph_input,
    normalise,
    value_shapes,
)
from nobound.nn import (
    BatchNorm,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    Normalize,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)

__all__ = ["ImportedNetwork", "OnnxImportError", "import_onnx", "symmetric_convolution"]


@dataclass
class Checkpoint:
    """After node ``node`` the ONNX value ``value`` equals the output of ``layers`` layers,
    read in the order ``index`` (flat positions into the layers' output)."""

    node: str
    value: str
    layers: int
    index: np.ndarray


@dataclass
class ImportedNetwork:
    """The model, the shape of one input (no batch axis) and the number of outputs.

    ``input_order[k]`` is the position in the file's flattened input (and the VNNLIB
    variable ``X_k``'s index order) of the network's k-th flattened input; ``None`` means
    the identity. ``onnx_model`` is the normalised graph the import was checked against.
    """

    model: Sequential
    input_shape: tuple[int, ...]
    num_outputs: int
    input_order: np.ndarray | None = None
    dropped_softmax: bool = False
    onnx_model: Any = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_model_input(self, file_values: Any) -> np.ndarray:
        """File-ordered values (flat, one per ``X_i``; or a batch (N, n)) → model inputs."""
        values = np.asarray(file_values)
        flat = values.reshape(-1, int(prod(self.input_shape)))
        if self.input_order is not None:
            flat = flat[:, self.input_order]
        shaped = flat.reshape(-1, *self.input_shape)
        return shaped[0] if values.ndim == 1 else shaped

    def to_file_input(self, model_input: Any) -> np.ndarray:
        """The inverse of :meth:`to_model_input` for one input: flat, in file order."""
        flat = np.asarray(model_input).reshape(-1)
        if self.input_order is None:
            return flat.copy()
        out = np.empty_like(flat)
        out[self.input_order] = flat
        return out


def _set(parameter: Tensor, value: np.ndarray) -> None:
    parameter.data = np.asarray(value, dtype=parameter.dtype).reshape(parameter.shape).copy()


def _affine_batchnorm(scale: np.ndarray, shift: np.ndarray, spatial: bool,
                      dtype: Any) -> BatchNorm:
    """A BatchNorm that computes exactly y = scale·x + shift per channel (see the table)."""
    layer = BatchNorm(scale.size, spatial=spatial, eps=0.0, dtype=dtype)
    _set(layer.weight, scale)
    _set(layer.bias, shift)
    return layer.eval()


def symmetric_convolution(weight: np.ndarray, pads: list[int], strides: list[int]
                          ) -> tuple[np.ndarray, int, int]:
    """(square kernel, stride, symmetric padding) computing the same as ``weight`` with
    ONNX ``pads`` = [top, left, bottom, right], or :class:`OnnxImportError`.

    Along one axis, output i reads inputs i·s + j − begin for kernel taps j. With padding
    p = max(begin, end) the same inputs are read by a kernel with p − begin zero taps in
    front (and end − begin... zero taps behind when begin > end), and the output length
    (n + begin + end − k)/s + 1 is unchanged. An axis whose padding is smaller than the
    other's gets δ more padding and δ zero taps on both sides (length unchanged again);
    the two axes then agree exactly when k − 2p is the same for both.
    """
    if len(set(strides)) != 1:
        raise OnnxImportError(f"unequal strides {strides} are not supported")
    kernel_sizes, paddings, front = [], [], []
    for axis in range(2):
        begin, end = pads[axis], pads[axis + 2]
        padding = max(begin, end)
        kernel_sizes.append(weight.shape[2 + axis] + abs(begin - end))
        paddings.append(padding)
        front.append(padding - begin)
    if kernel_sizes[0] - 2 * paddings[0] != kernel_sizes[1] - 2 * paddings[1]:
        raise OnnxImportError(f"kernel {list(weight.shape[2:])} with pads {pads} cannot be "
                              f"written as a square kernel with equal pads")
    padding = max(paddings)
    size = kernel_sizes[0] + 2 * (padding - paddings[0])
    square = np.zeros(weight.shape[:2] + (size, size), dtype=weight.dtype)
    top = front[0] + padding - paddings[0]
    left = front[1] + padding - paddings[1]
    square[:, :, top:top + weight.shape[2], left:left + weight.shape[3]] = weight
    return square, int(strides[0]), int(padding)


def _canonical(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The network's shape for ONNX data of ``shape`` (no batch): a vector when at most one
    axis is longer than 1, else (C, H, W)."""
    if sum(1 for d in shape if d != 1) <= 1:
        return (int(prod(shape)),)
    if len(shape) == 3:
        return tuple(shape)
    raise OnnxImportError(f"data of shape {shape} is neither a vector nor (C, H, W)")


class _Importer:
    def __init__(self, model: Any, dtype: Any) -> None:
        from onnx import numpy_helper

        self.dtype = dtype
        self.constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.shapes = value_shapes(model)
        source = graph_input(model)
        full = self.shapes.get(source.name)
        if not full or len(full) < 2 or full[0] != 1:
            raise OnnxImportError(f"graph input {source.name!r} needs a batch axis and a "
                                  f"known shape, got {full}")
        self.current = source.name
        self.shape: tuple[int, ...] = full[1:]      # the value ``index`` points into
        self.index = np.arange(prod(self.shape)).reshape(self.shape)
        self.input_shape: tuple[int, ...] | None = None  # fixed by the first layer
        self.input_order: np.ndarray | None = None
        self.pads: list[int] | None = None          # a pending Pad (top, left, bottom, right)
        self.layers: list[Module] = []
        self.checkpoints: list[Checkpoint] = []
        self.dropped_softmax = False
        self.last_linear: str | None = None         # node whose Add may fold into the bias
        self.merged = False                         # this node changed the previous layer

    # ------------------------------------------------------------------ helpers
    def fail(self, node: Any, index: int, message: str) -> OnnxImportError:
        name = node.name or f"#{index}"
        return OnnxImportError(f"node {name!r} ({node.op_type}): {message}")

    def operands(self, node: Any, index: int) -> tuple[int, list[np.ndarray]]:
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

        values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}

    def output_shape(self, node: Any, index: int) -> tuple[int, ...]:
        shape = self.shapes.get(node.output[0])
        if shape is None or not shape or shape[0] != 1:
            raise self.fail(node, index, f"output shape unknown after shape inference "
                                         f"({shape})")
        return shape[1:]

    def materialise(self) -> None:
        """Before the first layer: the network's input is the current value, canonically
        shaped, read from the file's input in the order of ``index``."""
        if self.input_shape is None:
            self.input_shape = _canonical(self.index.shape)
            order = self.index.reshape(-1)
            self.input_order = None if np.array_equal(order, np.arange(order.size)) else order
            self.shape = self.input_shape
            self.index = np.arange(order.size).reshape(self.index.shape)

    def identity_layout(self, node: Any, index: int) -> None:
        """Layers with a layout need the ONNX value to be the network's value as it is."""
        self.materialise()
        if self.pads is not None and node.op_type not in ("Conv", "AveragePool"):
            raise self.fail(node, index, "a Pad must be followed by Conv or AveragePool")
        if self.index.shape != self.shape or \
                not np.array_equal(self.index.reshape(-1), np.arange(self.index.size)):
            raise self.fail(node, index, f"data in a transposed layout (ONNX shape "
                                         f"{self.index.shape}, network {self.shape}); only "
                                         f"transposes at the input or before a Linear")

    def append(self, layer: Module) -> None:
        self.layers.append(layer)

    def feature_values(self, operand: np.ndarray, node: Any, index: int) -> np.ndarray:
        """A constant broadcast against the data, re-ordered into the network's layout."""
        self.materialise()
        try:
            full = np.broadcast_to(np.asarray(operand, np.float64), (1, *self.index.shape))
        except ValueError:
            raise self.fail(node, index, f"constant of shape {np.shape(operand)} does not "
                                         f"broadcast to the data {self.index.shape}") from None
        values = np.empty(self.index.size)
        values[self.index.reshape(-1)] = full.reshape(-1)
        return values.reshape(self.shape)

    # ------------------------------------------------------------------ operators
    def linear(self, weight: np.ndarray, bias: np.ndarray, node: Any, index: int) -> None:
        """y = W v + b where v is the ONNX data (a vector in ``index`` order)."""
        self.materialise()
        if self.pads is not None:
            raise self.fail(node, index, "a Pad must be followed by Conv or AveragePool")
        if self.index.size != weight.shape[1]:
            raise self.fail(node, index, f"weight {weight.shape} does not match data of "
                                         f"{self.index.size} features")
        if len(self.shape) == 3:
            self.append(Flatten())
        columns = np.zeros_like(weight)
        columns[:, self.index.reshape(-1)] = weight       # W v = W' (network value)
        layer = Linear(weight.shape[1], weight.shape[0], dtype=self.dtype)
        _set(layer.weight, columns)
        _set(layer.bias, np.broadcast_to(bias, (weight.shape[0],)))
        self.append(layer)
        self.shape = (weight.shape[0],)

    def gemm(self, node: Any, index: int) -> None:
        position, operands = self.operands(node, index)
        attrs = self.attributes(node)
        if position != 0 or attrs.get("transA", 0):
            raise self.fail(node, index, "the data must be the first, untransposed operand")
        matrix = operands[0] if attrs.get("transB", 0) else operands[0].T
        bias = attrs.get("beta", 1.0) * operands[1] if len(operands) > 1 else np.zeros(1)
        self.linear(attrs.get("alpha", 1.0) * matrix, np.reshape(bias, -1), node, index)
        self.index = np.arange(self.shape[0]).reshape(self.output_shape(node, index))

    def matmul(self, node: Any, index: int) -> None:
        position, (matrix,) = self.operands(node, index)
        data_shape = self.index.shape
        if position != 0 or matrix.ndim != 2 or prod(data_shape[:-1]) != 1:
            raise self.fail(node, index, "only data (a vector) @ constant matrix")
        self.linear(matrix.T, np.zeros(matrix.shape[1]), node, index)
        self.index = np.arange(self.shape[0]).reshape(self.output_shape(node, index))

    def conv_layer(self, weight: np.ndarray, bias: np.ndarray | None, pads: list[int],
                   strides: list[int], node: Any, index: int) -> None:
        if self.pads is not None:
            pads = [a + b for a, b in zip(pads, self.pads, strict=True)]
            self.pads = None
        try:
            square, stride, padding = symmetric_convolution(weight, pads, strides)
        except OnnxImportError as error:
            raise self.fail(node, index, str(error)) from None
        layer = Conv2d(square.shape[1], square.shape[0], square.shape[2], stride, padding,
                       bias=bias is not None, dtype=self.dtype)
        _set(layer.weight, square)
        if bias is not None:
            _set(layer.bias, bias)
        self.shape = layer.output_shape(self.shape)
        if self.shape != self.output_shape(node, index):
            raise self.fail(node, index, f"output {self.shape} differs from ONNX's "
                                         f"{self.output_shape(node, index)}")
        self.append(layer)
        self.index = np.arange(prod(self.shape)).reshape(self.shape)

    def padding(self, attrs: dict[str, Any], rank: int, node: Any, index: int) -> list[int]:
        """ONNX pads (with auto_pad resolved) as [top, left, bottom, right]."""
        auto = attrs.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", "VALID"):
            return list(attrs.get("pads", [0] * 2 * rank)) if auto == "NOTSET" else [0] * 4
        kernel, strides = attrs["kernel_shape"], attrs.get("strides", [1, 1])
        pads = [0] * 4
        for axis in range(2):
            size = self.shape[1 + axis]
            out = -(-size // strides[axis])
            total = max(0, (out - 1) * strides[axis] + kernel[axis] - size)
            small, large = total // 2, total - total // 2
            pads[axis], pads[axis + 2] = (small, large) if auto == "SAME_UPPER" else \
                (large, small)
        return pads

    def conv(self, node: Any, index: int) -> None:
        position, operands = self.operands(node, index)
        self.identity_layout(node, index)
        attrs = self.attributes(node)
        weight = operands[0]
        if position != 0 or weight.ndim != 4 or len(self.shape) != 3:
            raise self.fail(node, index, "only 2-D convolutions of (C, H, W) data")
        if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise self.fail(node, index, "groups and dilations are unsupported")
        attrs.setdefault("kernel_shape", list(weight.shape[2:]))
        self.conv_layer(weight, operands[1] if len(operands) > 1 else None,
                        self.padding(attrs, 2, node, index), list(attrs.get("strides", [1, 1])),
                        node, index)

    def average_pool(self, node: Any, index: int, global_: bool) -> None:
        self.operands(node, index)
        self.identity_layout(node, index)
        if len(self.shape) != 3:
            raise self.fail(node, index, "pooling needs (C, H, W) data")
        attrs = self.attributes(node)
        channels = self.shape[0]
        kernel = list(self.shape[1:]) if global_ else list(attrs["kernel_shape"])
        pads = [0, 0, 0, 0] if global_ else self.padding(attrs, 2, node, index)
        if attrs.get("ceil_mode", 0) or (any(pads) and not attrs.get("count_include_pad", 0)):
            raise self.fail(node, index, "ceil_mode and padding not counted in the average "
                                         "are unsupported")
        weight = np.zeros((channels, channels, *kernel))
        weight[np.arange(channels), np.arange(channels)] = 1.0 / prod(kernel)
        strides = [1, 1] if global_ else list(attrs.get("strides", [1, 1]))
        self.conv_layer(weight, None, pads, strides, node, index)

    def max_pool(self, node: Any, index: int) -> None:
        self.operands(node, index)
        if self.pads is not None:
            raise self.fail(node, index, "a zero Pad before MaxPool is not a −∞ padding")
        self.identity_layout(node, index)
        attrs = self.attributes(node)
        kernel = list(attrs["kernel_shape"])
        strides = list(attrs.get("strides", [1, 1]))
        pads = self.padding(attrs, 2, node, index)
        if len(node.output) > 1 and node.output[1] or attrs.get("ceil_mode", 0) or \
                any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise self.fail(node, index, "indices output, ceil_mode and dilations are "
                                         "unsupported")
        if len(set(kernel)) != 1 or len(set(strides)) != 1 or len(set(pads)) != 1 or \
                len(self.shape) != 3:
            raise self.fail(node, index, "needs (C, H, W) data, a square kernel, equal "
                                         "strides and equal pads")
        layer = MaxPool2d(kernel[0], strides[0], pads[0])
        self.shape = layer.output_shape(self.shape)
        if self.shape != self.output_shape(node, index):
            raise self.fail(node, index, f"output {self.shape} differs from ONNX's "
                                         f"{self.output_shape(node, index)}")
        self.append(layer)
        self.index = np.arange(prod(self.shape)).reshape(self.shape)

    def pad(self, node: Any, index: int) -> None:
        position, operands = self.operands(node, index)
        attrs = self.attributes(node)
        pads = [int(p) for p in (operands[0] if operands else attrs.get("pads", []))]
        value = float(np.reshape(operands[1], -1)[0]) if len(operands) > 1 and \
            np.size(operands[1]) else float(attrs.get("value", 0.0))
        rank = len(pads) // 2
        if attrs.get("mode", "constant") != "constant" or value != 0.0 or rank != 4 or \
                any(pads[a] or pads[a + rank] for a in (0, 1)) or len(operands) > 2:
            raise self.fail(node, index, "only constant-zero padding of the spatial axes")
        self.identity_layout(node, index)
        mine = [pads[2], pads[3], pads[6], pads[7]]
        self.pads = mine if self.pads is None else \
            [a + b for a, b in zip(self.pads, mine, strict=True)]
        self.index = np.arange(prod(self.shape)).reshape(self.shape)

    def fold_into_bias(self, node: Any, index: int, shift: np.ndarray) -> bool:
        """Add a constant to the previous Linear/Conv2d's bias when it is per output unit."""
        last = self.layers[-1] if self.layers else None
        if self.last_linear is None or not isinstance(last, Linear | Conv2d) or \
                last.bias is None:
            return False
        values = self.feature_values(shift, node, index)
        if len(self.shape) == 3:
            per_channel = values.reshape(self.shape[0], -1)
            if not np.all(per_channel == per_channel[:, :1]):
                return False
            values = per_channel[:, 0]
        _set(last.bias, last.bias.data + values)
        self.merged = True
        return True

    def affine(self, scale: np.ndarray, shift: np.ndarray, node: Any, index: int) -> None:
        """Append y = scale·x + shift (per feature or per channel), see the module table."""
        if self.pads is not None:
            raise self.fail(node, index, "a Pad must be followed by Conv or AveragePool")
        scale = self.feature_values(scale, node, index)
        shift = self.feature_values(shift, node, index)
        if len(self.shape) == 3:
            per = [v.reshape(self.shape[0], -1) for v in (scale, shift)]
            if all(np.all(v == v[:, :1]) for v in per):
                self.channel_affine(per[0][:, 0], per[1][:, 0])
                return
            if self.index.ndim != 1:
                raise self.fail(node, index, f"constant operand is not per-channel for data "
                                             f"of shape {self.shape}")
            self.append(Flatten())   # ONNX flattened already: per feature on the vector
            self.shape = (int(prod(self.shape)),)
        self.append(_affine_batchnorm(scale.reshape(-1), shift.reshape(-1), False, self.dtype))

    def channel_affine(self, scale: np.ndarray, shift: np.ndarray) -> None:
        """y = scale·x + shift per channel of (C, H, W) data."""
        if np.all(scale > 0):
            std, mean = 1.0 / scale, -shift / scale
            last = self.layers[-1] if self.layers else None
            if isinstance(last, Normalize):  # (x − m₁)/s₁ then (· − m₂)/s₂
                mean, std = last.mean + mean * last.std, last.std * std
                self.layers.pop()
                self.merged = True
            self.append(Normalize(mean, std, dtype=self.dtype))
            return
        self.append(_affine_batchnorm(scale, shift, True, self.dtype))

    def elementwise(self, node: Any, index: int) -> None:
        position, (operand,) = self.operands(node, index)
        op = node.op_type
        if op == "Add" or (op == "Sub" and position == 0):
            shift = operand if op == "Add" else -np.asarray(operand, np.float64)
            if self.fold_into_bias(node, index, shift):
                return
            self.affine(np.ones(1), shift, node, index)
        elif op == "Sub":
            self.affine(-np.ones(1), operand, node, index)
        elif op == "Mul":
            self.affine(operand, np.zeros(1), node, index)
        elif op == "Div":
            if position != 0 or np.any(operand == 0):
                raise self.fail(node, index, "only division of the data by nonzero constants")
            self.affine(1.0 / np.asarray(operand, np.float64), np.zeros(1), node, index)

    def batchnorm(self, node: Any, index: int) -> None:
        position, (gamma, beta, mean, var) = self.operands(node, index)
        self.identity_layout(node, index)
        eps = self.attributes(node).get("epsilon", 1e-5)
        layer = BatchNorm(self.shape[0], spatial=len(self.shape) == 3, eps=eps,
                          dtype=self.dtype)
        _set(layer.weight, gamma)
        _set(layer.bias, beta)
        layer.running_mean = np.asarray(mean, layer.running_mean.dtype).copy()
        layer.running_var = np.asarray(var, layer.running_var.dtype).copy()
        self.append(layer.eval())

    def relayout(self, node: Any, index: int) -> None:
        """Transpose / Reshape / Flatten / (Un)squeeze: move the index, not the data."""
        self.operands(node, index)
        out = self.output_shape(node, index)
        if node.op_type == "Transpose":
            perm = list(self.attributes(node).get("perm", range(self.index.ndim + 1)[::-1]))
            moved = self.index[None].transpose(perm)
            if moved.shape[0] != 1:
                raise self.fail(node, index, f"transpose {perm} moves the batch axis")
            self.index = moved.reshape(out)
        else:
            if prod(out) != self.index.size:
                raise self.fail(node, index, f"reshape of {self.index.shape} to {out} "
                                             f"changes the batch axis")
            self.index = self.index.reshape(out)

    def node(self, node: Any, index: int, last: bool) -> None:
        op = node.op_type
        self.merged = False
        if op in ("Gemm", "MatMul", "Conv"):
            {"Gemm": self.gemm, "MatMul": self.matmul, "Conv": self.conv}[op](node, index)
        elif op in ("Add", "Sub", "Mul", "Div"):
            self.elementwise(node, index)
        elif op == "BatchNormalization":
            self.batchnorm(node, index)
        elif op in ("Relu", "Sigmoid", "Tanh"):
            self.operands(node, index)
            self.materialise()
            if self.pads is not None:
                raise self.fail(node, index, "a Pad must be followed by Conv or AveragePool")
            self.append({"Relu": ReLU, "Sigmoid": Sigmoid, "Tanh": Tanh}[op]())
        elif op == "MaxPool":
            self.max_pool(node, index)
        elif op in ("AveragePool", "GlobalAveragePool"):
            self.average_pool(node, index, op == "GlobalAveragePool")
        elif op == "Pad":
            self.pad(node, index)
        elif op in ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"):
            self.relayout(node, index)
        elif op == "Softmax" and last:
            self.operands(node, index)
            axis = self.attributes(node).get("axis", -1)
            if self.index.ndim != 1 or axis not in (-1, 1):
                raise self.fail(node, index, "only a Softmax over the output vector")
            self.dropped_softmax = True
            self.current = node.output[0]
            return
        elif op == "Softmax":
            raise self.fail(node, index, "Softmax is only supported as the last node")
        else:
            raise self.fail(node, index, "unsupported operator")
        self.current = node.output[0]
        folded = self.merged and self.last_linear is not None
        self.last_linear = node.name if op in ("Gemm", "MatMul", "Conv") or folded else None
        if self.merged and self.checkpoints:
            self.checkpoints.pop()  # the previous node's own output no longer exists
        if self.input_shape is not None and self.pads is None:
            self.checkpoints.append(Checkpoint(node.name or f"#{index} {op}", node.output[0],
                                               len(self.layers), self.index.copy()))

    def finish(self) -> tuple[int, ...]:
        """Make the output a vector in ONNX order; returns the network's output shape."""
        self.materialise()
        if self.pads is not None:
            raise OnnxImportError("the graph ends in a Pad")
        if len(self.shape) == 3:
            self.append(Flatten())
        order = self.index.reshape(-1)
        if not np.array_equal(order, np.arange(order.size)):
            permutation = Linear(order.size, order.size, bias=False, dtype=self.dtype)
            matrix = np.zeros((order.size, order.size))
            matrix[np.arange(order.size), order] = 1.0
            _set(permutation.weight, matrix)
            self.append(permutation)
        return (int(order.size),)


def import_onnx(source: str | Path | Any, dtype: Any = None, check: bool = True,
                check_box: tuple[np.ndarray, np.ndarray] | None = None) -> ImportedNetwork:
    """Read an ONNX model (path, ``.onnx.gz`` or ``ModelProto``) into an
    :class:`ImportedNetwork`, checked against the graph (:func:`check_import`) unless
    ``check`` is False; ``check_box`` = (lower, upper) in file order is where inputs are
    drawn for the check (default: a standard normal)."""
    try:
        import onnx  # noqa: F401
    except ImportError as error:  # pragma: no cover - onnx is an optional extra
        raise ImportError("ONNX import needs the optional extra: pip install "
                          "nobound[onnx]") from error
    normalised = normalise(source)
    importer = _Importer(normalised, np.dtype(dtype or default_dtype()))
    nodes = list(normalised.graph.node)
    for index, node in enumerate(nodes):
        importer.node(node, index, last=index == len(nodes) - 1)
    outputs = [o.name for o in normalised.graph.output]
    if outputs != [importer.current]:
        raise OnnxImportError(f"graph outputs {outputs} are not the end of the node chain "
                              f"({importer.current!r})")
    output_shape = importer.finish()
    if not importer.layers:
        raise OnnxImportError("the graph computes no layer")
    network = ImportedNetwork(
        Sequential(*importer.layers).eval(), tuple(int(d) for d in importer.input_shape),
        output_shape[0], importer.input_order, importer.dropped_softmax, normalised,
        importer.checkpoints)
    if importer.dropped_softmax:
        network.notes.append("the trailing Softmax was dropped: it preserves the order of "
                             "the outputs, so only properties comparing outputs pairwise "
                             "are decided")
    if check:
        from nobound.io.onnx_check import check_import

        check_import(network, check_box)
    return network
