"""A network's structure as plain JSON, so a checkpoint can rebuild the model it holds.

``describe_model(model)`` lists the layers of a :class:`~nobound.nn.Sequential` with the
constructor arguments of each (no weights)::

    {"format": "nobound-sequential", "dtype": "float32", "input_shape": [1, 28, 28],
     "num_classes": 10, "name": "cnn3",
     "layers": [{"type": "Normalize", "mean": [0.1307], "std": [0.3081]},
                {"type": "Conv2d", "in_channels": 1, "out_channels": 8, ...}, ...]}

and ``build_model_from_description`` builds the same Sequential (weights then come from
the state dict). Any network made of the layers below round-trips, not only the zoo's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nobound.backend import to_numpy
from nobound.nn.activation import Flatten, ReLU, Sigmoid, Tanh
from nobound.nn.layers import Conv2d, Linear
from nobound.nn.module import Module
from nobound.nn.normalization import BatchNorm, Normalize
from nobound.nn.pooling import MaxPool2d
from nobound.nn.sequential import Sequential

FORMAT = "nobound-sequential"


def describe_layer(layer: Module) -> dict[str, Any]:
    """Constructor arguments of one layer, with its type name."""
    if isinstance(layer, Linear):
        return {"type": "Linear", "in_features": layer.in_features,
                "out_features": layer.out_features, "bias": layer.bias is not None}
    if isinstance(layer, Conv2d):
        return {"type": "Conv2d", "in_channels": layer.in_channels,
                "out_channels": layer.out_channels, "kernel_size": layer.kernel_size,
                "stride": layer.stride, "padding": layer.padding,
                "bias": layer.bias is not None}
    if isinstance(layer, ReLU | Sigmoid | Tanh):
        return {"type": type(layer).__name__}
    if isinstance(layer, MaxPool2d):
        return {"type": "MaxPool2d", "kernel_size": layer.kernel_size, "stride": layer.stride,
                "padding": layer.padding}
    if isinstance(layer, Flatten):
        return {"type": "Flatten", "feature_dims": layer.feature_dims}
    if isinstance(layer, BatchNorm):
        return {"type": "BatchNorm", "num_features": layer.num_features,
                "spatial": layer.spatial, "eps": layer.eps, "momentum": layer.momentum}
    if isinstance(layer, Normalize):
        # to_numpy: after model.to("cuda") these buffers are on the GPU
        return {"type": "Normalize", "mean": to_numpy(layer.mean).tolist(),
                "std": to_numpy(layer.std).tolist()}
    raise ValueError(f"cannot describe layer {type(layer).__name__} for a checkpoint")


def describe_model(model: Sequential, input_shape: Sequence[int] | None = None,
                   num_classes: int | None = None, name: str | None = None) -> dict[str, Any]:
    """The JSON description of ``model`` (see the module docstring)."""
    if not isinstance(model, Sequential):
        raise ValueError(f"only Sequential models can be described, got {type(model).__name__}")
    params = [p for p in model.parameters()]
    dtype = str(params[0].dtype) if params else "float32"
    return {"format": FORMAT, "dtype": dtype, "name": name,
            "input_shape": None if input_shape is None else [int(n) for n in input_shape],
            "num_classes": num_classes,
            "layers": [describe_layer(layer) for layer in model.layers]}


def build_layer(spec: dict[str, Any], dtype: Any) -> Module:
    kind = spec.get("type")
    args = {k: v for k, v in spec.items() if k != "type"}
    if kind == "Linear":
        return Linear(dtype=dtype, **args)
    if kind == "Conv2d":
        return Conv2d(dtype=dtype, **args)
    if kind in ("ReLU", "Sigmoid", "Tanh"):
        return {"ReLU": ReLU, "Sigmoid": Sigmoid, "Tanh": Tanh}[kind]()
    if kind == "MaxPool2d":
        return MaxPool2d(**args)
    if kind == "Flatten":
        return Flatten(**args)
    if kind == "BatchNorm":
        return BatchNorm(dtype=dtype, **args)
    if kind == "Normalize":
        return Normalize(args["mean"], args["std"], dtype=dtype)
    raise ValueError(f"unknown layer type {kind!r} in the model description")


def build_model_from_description(description: dict[str, Any]) -> Sequential:
    """A freshly constructed (zero-weight) Sequential matching ``description``."""
    if description.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} description (format={description.get('format')!r})")
    dtype = np.dtype(description.get("dtype", "float32"))
    return Sequential(*(build_layer(layer, dtype) for layer in description["layers"]))
