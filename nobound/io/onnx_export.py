"""Export a nobound ``Sequential`` to ONNX (optional extra ``onnx``).

Each layer becomes the ONNX operators that compute the same function in eval mode:

=============  ===============================================================
nobound        ONNX
=============  ===============================================================
Normalize      Sub(mean) then Div(std), constants shaped (C, 1, 1)
Conv2d         Conv (kernel, strides, symmetric pads)
Linear         Gemm with transB = 1 (y = x Wᵀ + b)
BatchNorm      BatchNormalization with the running statistics (eval semantics)
ReLU           Relu
Sigmoid, Tanh  Sigmoid, Tanh
MaxPool2d      MaxPool (square kernel, strides, symmetric pads)
Flatten        Flatten(axis = 1)
=============  ===============================================================

The batch axis is symbolic (``"batch"``); the dtype of the tensors is the model's.
:func:`nobound.io.onnx_import.import_onnx` reads the result back to the same network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nobound.backend import get_array_module, to_numpy
from nobound.nn import (
    BatchNorm,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Normalize,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)

OPSET = 15


def _constant(name: str, value: Any, dtype: np.dtype) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(to_numpy(value), dtype=dtype), name)


def to_onnx(model: Sequential, input_shape: Sequence[int], name: str = "nobound") -> Any:
    """The ``onnx.ModelProto`` of ``model`` for inputs of shape (batch, *input_shape)."""
    from onnx import TensorProto, checker, helper

    parameters = [p for p in model.parameters()]
    dtype = np.dtype(parameters[0].dtype if parameters else np.float32)
    model_xp = get_array_module(*(p.data for p in parameters))
    elem_type = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    nodes, initialisers = [], []
    current = "input"
    for index, layer in enumerate(model.layers):
        out = f"layer{index}"
        prefix = f"{index}."
        if isinstance(layer, Normalize):
            mean, std = (to_numpy(v).reshape(-1, 1, 1) for v in (layer.mean, layer.std))
            initialisers += [_constant(prefix + "mean", mean, dtype),
                             _constant(prefix + "std", std, dtype)]
            nodes += [helper.make_node("Sub", [current, prefix + "mean"], [out + "_centred"]),
                      helper.make_node("Div", [out + "_centred", prefix + "std"], [out])]
        elif isinstance(layer, Conv2d | Linear):
            names = [prefix + "weight"] + ([prefix + "bias"] if layer.bias is not None else [])
            initialisers += [_constant(n, getattr(layer, n.split(".")[1]).data, dtype)
                             for n in names]
            if isinstance(layer, Linear):
                nodes.append(helper.make_node("Gemm", [current, *names], [out], transB=1))
            else:
                k, s, p = layer.kernel_size, layer.stride, layer.padding
                nodes.append(helper.make_node("Conv", [current, *names], [out],
                                              kernel_shape=[k, k], strides=[s, s],
                                              pads=[p, p, p, p]))
        elif isinstance(layer, BatchNorm):
            names = [prefix + n for n in ("weight", "bias", "running_mean", "running_var")]
            values = [layer.weight.data, layer.bias.data, layer.running_mean,
                      layer.running_var]
            initialisers += [_constant(n, v, dtype) for n, v in zip(names, values, strict=True)]
            nodes.append(helper.make_node("BatchNormalization", [current, *names], [out],
                                          epsilon=float(layer.eps)))
        elif isinstance(layer, ReLU | Sigmoid | Tanh):
            nodes.append(helper.make_node(type(layer).__name__.capitalize(), [current], [out]))
        elif isinstance(layer, MaxPool2d):
            k, s, p = layer.kernel_size, layer.stride, layer.padding
            nodes.append(helper.make_node("MaxPool", [current], [out], kernel_shape=[k, k],
                                          strides=[s, s], pads=[p, p, p, p]))
        elif isinstance(layer, Flatten):
            if layer.feature_dims != 3:
                raise ValueError("only Flatten of (C, H, W) features can be exported")
            nodes.append(helper.make_node("Flatten", [current], [out], axis=1))
        else:
            raise ValueError(f"layer {index} ({type(layer).__name__}) has no ONNX export")
        current = out
    nodes[-1].output[0] = "output"
    probe = model_xp.zeros((1, *input_shape), dtype=dtype)  # where the model lives
    num_outputs = int(to_numpy(model(probe).data).shape[-1])
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", elem_type, ["batch", *input_shape])],
        [helper.make_tensor_value_info("output", elem_type, ["batch", num_outputs])],
        initialisers)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="nobound")
    checker.check_model(onnx_model)
    return onnx_model


def export_onnx(model: Sequential, path: str | Path, input_shape: Sequence[int]) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (see :func:`to_onnx`)."""
    import onnx

    path = Path(path)
    onnx.save(to_onnx(model, input_shape), str(path))
    return path
